"""`make run` keeps its data in SQLite (no DATABASE_URL), while the rest of the suite runs on PostgreSQL. A lookup
only PostgreSQL has (a JSON `contains`, say) would pass every other test and fail a user's first delete. This
runs a user's day of writes and reads on a fresh SQLite database, in a process of its own: migrate, then create
services (one mirroring another, one in a group, labelled), update, scale, canary, label, stop, start, list by
label, diagnose, read events, delete each."""

import os
import subprocess
import sys
import textwrap

from tests.agent.kit import REPO

WALKTHROUGH = textwrap.dedent('''
    import django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0)

    from django.contrib.auth import get_user_model

    from services import selectors, writes
    from services.models import Project, Service
    from services.selectors.diagnosis import service_facts

    project = Project.objects.get(name="default")
    def sleeper(name, **extra):
        return {"name": name, "processor": "custom", "metadata": {"instance": 1, **extra.pop("metadata", {})},
                "containers": [{"image": "none", "script": "sleep 600", "port": 8000}], **extra}

    target = writes.service_create(actor=None, project=project, document=sleeper("target", labels={"team": "a"}))
    source = writes.service_create(actor=None, project=project, document=sleeper("source"))
    grouped = writes.service_create(actor=None, project=project,
                                    document=sleeper("grouped", metadata={"group": "pool"}))
    writes.mirror_set(actor=None, service=Service.objects.get(pk=source.pk), targets=["target"], ratio=10)
    writes.service_update(actor=None, service=Service.objects.get(pk=target.pk),
                          patch={"metadata": {"instance": 2}})
    writes.service_scale(actor=None, service=Service.objects.get(pk=target.pk), instances=3)
    writes.service_label_update(actor=None, service=Service.objects.get(pk=target.pk), labels={"tier": "gold"})
    writes.service_stop(actor=None, service=Service.objects.get(pk=grouped.pk))
    writes.service_start(actor=None, service=Service.objects.get(pk=grouped.pk))

    admin = get_user_model().objects.create_superuser("walker", password="walker-password-1")
    assert [s.name for s in selectors.services_list(admin, labels={"tier": "gold"})] == ["target"]
    assert service_facts(Service.objects.get(pk=target.pk)).name == "target"
    assert Service.objects.get(pk=target.pk).events.exists()

    for service in (target, source, grouped):  # deleting the mirror's target re-publishes the mirroring one
        writes.service_delete(actor=None, service=Service.objects.get(pk=service.pk))
    print("walked", Service.objects.filter(deletion_requested_at__isnull=True).count())
''')


def test_a_users_writes_and_reads_work_on_sqlite(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(FERRY_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="config.settings",
               CELERY_TASK_ALWAYS_EAGER="true")
    done = subprocess.run([sys.executable, "-c", WALKTHROUGH], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("walked 0"), done.stdout[-2000:]
    assert (tmp_path / "var" / "ferry.sqlite3").exists()  # it did run on SQLite
