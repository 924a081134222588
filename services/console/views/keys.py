"""Access keys and API tokens of the signed-in user: create (the secret is shown once, on the answer to the
POST, never stored in the page or the session), list, revoke."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect

from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from services import selectors
from services import writes

from ..rendering import render
from ..forms import AccessKeyForm, ApiTokenForm


def _page(request, *, status: int = 200, **extra):
    context = {
        "access_keys": selectors.access_keys_of(request.user),
        "api_tokens": selectors.api_tokens_of(request.user),
        "key_form": AccessKeyForm(),
        "token_form": ApiTokenForm(),
        **extra,
    }
    response = render(request, "console/keys.html", context, status=status)
    response["Cache-Control"] = "no-store"  # the page may hold a secret shown once
    return response


@login_required
@require_safe
def keys(request):
    return _page(request)


@login_required
@require_POST
def access_key_create(request):
    form = AccessKeyForm(request.POST)
    if not form.is_valid():
        return _page(request, status=422, key_form=form)
    key, secret = writes.access_key_create(user=request.user, description=form.cleaned_data["description"])
    return _page(request, new_key=key, new_secret=secret)


@login_required
@require_POST
def access_key_revoke(request, key_id: str):
    key = selectors.access_keys_of(request.user).filter(access_key_id=key_id).first()
    if key is None:
        raise Http404("No such access key.")
    writes.access_key_revoke(access_key=key)
    messages.success(request, f"Revoked access key {key.access_key_id}.")
    return redirect(reverse("console:keys"))


@login_required
@require_POST
def api_token_create(request):
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _page(request, status=422, token_form=form)
    token, plaintext = writes.api_token_create(user=request.user, name=form.cleaned_data["name"])
    return _page(request, new_token=token, new_token_plaintext=plaintext)


@login_required
@require_POST
def api_token_revoke(request, token_id: int):
    token = selectors.api_tokens_of(request.user).filter(pk=token_id).first()
    if token is None:
        raise Http404("No such token.")
    writes.api_token_revoke(token=token)
    messages.success(request, f"Revoked API token {token.name}.")
    return redirect(reverse("console:keys"))
