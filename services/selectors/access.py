"""Who may see and change what. Membership decides; what is not yours is reported as not found."""

from django.conf import settings
from django.db.models import QuerySet

from services.errors import Forbidden, InvalidRequest, NotFound
from services.models import Project, ProjectMembership, ProjectRole, Service

WRITE_ROLES = (ProjectRole.DEVELOPER, ProjectRole.OWNER)


def projects_of(user) -> QuerySet[Project]:
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user)


def role_in(user, project: Project) -> str | None:
    if user.is_superuser:
        return ProjectRole.OWNER
    membership = ProjectMembership.objects.filter(user=user, project=project).first()
    return membership.role if membership else None


def require_write(user, project: Project) -> None:
    if role_in(user, project) not in WRITE_ROLES:
        raise Forbidden(f"You may read but not change services of project {project.name}.")


def project_for_write(user, workspace_id: str | None) -> Project:
    """The project a new service goes to: the one named, else the user's only one, else the default."""
    projects = projects_of(user)
    if workspace_id:
        project = projects.filter(name=workspace_id).first()
        if project is None:
            raise NotFound(f'No project "{workspace_id}" that you belong to.', code="WorkspaceNotFound")
    else:
        project = _implicit_project(projects)
    require_write(user, project)
    return project


def _implicit_project(projects: QuerySet[Project]) -> Project:
    if projects.count() == 1:
        return projects.get()
    default = projects.filter(name=settings.FERRY_DEFAULT_PROJECT).first()
    if default is not None:
        return default
    if not projects.exists():
        raise Forbidden("You belong to no project; ask an owner to add you to one.")
    raise InvalidRequest.at("WorkspaceId", "you belong to several projects; name one")


def services_visible_to(user) -> QuerySet[Service]:
    services = Service.objects.select_related("cluster", "project")
    if user.is_superuser:
        return services
    return services.filter(project__memberships__user=user)


def service_for(user, cluster_id: str, service_name: str, *, write: bool = False) -> Service:
    service = services_visible_to(user).filter(cluster__name=cluster_id, name=service_name).first()
    if service is None:
        raise NotFound(f"Service {service_name} not found in cluster {cluster_id}.", code="ServiceNotFound")
    if write:
        require_write(user, service.project)
    return service
