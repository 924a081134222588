"""Access keys and API tokens of the signed-in user: create (the secret is shown once, on the answer to the
POST, never stored in the page or the session), list, revoke.

The writes and selectors of services.writes.credentials / services.selectors.credentials decide everything (the
same ones the REST API calls); these views only turn a form into their arguments and their answer into a page.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from services import selectors, writes
from services.errors import NotFound

from ..forms import AccessKeyForm, ApiTokenForm
from ..rendering import render


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


def _created(request, form, form_name: str, create, shown_as: tuple[str, str]):
    """The page with the new credential and its secret (`shown_as`: their names in the template), or with the
    form's errors. `create` gets the form's cleaned data and returns (credential, secret)."""
    if not form.is_valid():
        return _page(request, status=422, **{form_name: form})
    credential, secret = create(form.cleaned_data)
    credential_name, secret_name = shown_as
    return _page(request, **{credential_name: credential, secret_name: secret})


def _revoked(request, find, revoke, what):
    """Revokes the user's credential `find()` returns (404 if none) and goes back to the list."""
    try:
        credential = find()
    except NotFound as exc:
        raise Http404(exc.message) from None
    revoke(credential)
    messages.success(request, f"Revoked {what(credential)}.")
    return redirect(reverse("console:keys"))


@login_required
@require_safe
def keys(request):
    return _page(request)


@login_required
@require_POST
def access_key_create(request):
    return _created(request, AccessKeyForm(request.POST), "key_form",
                    lambda fields: writes.access_key_create(user=request.user, description=fields["description"]),
                    shown_as=("new_key", "new_secret"))


@login_required
@require_POST
def access_key_revoke(request, key_id: str):
    return _revoked(request, lambda: selectors.access_key_of(request.user, key_id),
                    lambda key: writes.access_key_revoke(access_key=key),
                    lambda key: f"access key {key.access_key_id}")


@login_required
@require_POST
def api_token_create(request):
    return _created(request, ApiTokenForm(request.POST), "token_form",
                    lambda fields: writes.api_token_create(user=request.user, name=fields["name"]),
                    shown_as=("new_token", "new_token_plaintext"))


@login_required
@require_POST
def api_token_revoke(request, token_id: int):
    return _revoked(request, lambda: selectors.api_token_of(request.user, token_id),
                    lambda token: writes.api_token_revoke(token=token),
                    lambda token: f"API token {token.name}")
