"""Grants a cluster to a project (or, with --revoke, takes the grant back); with no project, lists the grants.

    manage.py ferry_grant_cluster <cluster> <project> [--revoke]
    manage.py ferry_grant_cluster --list
"""

from django.core.management.base import BaseCommand, CommandError

from services.models import Cluster, ClusterGrant, Project
from services.writes.grants import cluster_grant, cluster_revoke


class Command(BaseCommand):
    help = "Grants a cluster to a project so its members may deploy there (--revoke takes it back; --list shows all)."

    def add_arguments(self, parser):
        parser.add_argument("cluster", nargs="?", help="The cluster's name (EAS ClusterId).")
        parser.add_argument("project", nargs="?", help="The project's name (EAS WorkspaceId).")
        parser.add_argument("--revoke", action="store_true", help="Take the grant back instead.")
        parser.add_argument("--list", action="store_true", help="List every grant.")

    def handle(self, *args, cluster: str | None, project: str | None, revoke: bool, list: bool, **options):
        if list:
            for grant in ClusterGrant.objects.select_related("cluster", "project"):
                self.stdout.write(f"{grant.cluster.name}\t{grant.project.name}")
            return
        if not cluster or not project:
            raise CommandError("name a cluster and a project (or give --list)")
        target_cluster = Cluster.objects.filter(name=cluster).first()
        if target_cluster is None:
            raise CommandError(f'no cluster named "{cluster}"')
        target_project = Project.objects.filter(name=project).first()
        if target_project is None:
            raise CommandError(f'no project named "{project}"')
        # Run by whoever holds the host's shell: the system itself, as migrations and bootstrap are.
        if revoke:
            done = cluster_revoke(actor=None, project=target_project, cluster=target_cluster)
            self.stdout.write(f"Revoked {cluster} from {project}." if done else f"{project} had no grant of {cluster}.")
        else:
            cluster_grant(actor=None, project=target_project, cluster=target_cluster)
            self.stdout.write(f"Granted {cluster} to {project}.")
