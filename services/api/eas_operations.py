"""Every operation of EAS's OpenAPI (2021-07-01), as its official SDK calls them: name, HTTP method, path.

The web server reads it to tell "an EAS operation Ferry does not have" (501, naming the operation) from "no
such path" (404); docs/eas-operations.md says which ones Ferry serves. Listed from the SDK's client, one
line per operation; placeholders in braces match one path segment.
"""

from __future__ import annotations

import re
from functools import cache

EAS_OPERATIONS: tuple[tuple[str, str, str], ...] = (
    ("CreateAppService", "POST", "/api/v2/app_services"),
    ("UpdateAppService", "PUT", "/api/v2/app_services/{cluster_id}/{service_name}"),
    ("CreateGateway", "POST", "/api/v2/gateways"),
    ("ListGateway", "GET", "/api/v2/gateways"),
    ("DeleteGateway", "DELETE", "/api/v2/gateways/{cluster_id}/{gateway_id}"),
    ("DescribeGateway", "GET", "/api/v2/gateways/{cluster_id}/{gateway_id}"),
    ("UpdateGateway", "PUT", "/api/v2/gateways/{cluster_id}/{gateway_id}"),
    ("CreateAclPolicy", "POST", "/api/v2/gateways/{cluster_id}/{gateway_id}/acl_policy"),
    ("DeleteAclPolicy", "DELETE", "/api/v2/gateways/{cluster_id}/{gateway_id}/acl_policy"),
    ("ListAclPolicy", "GET", "/api/v2/gateways/{cluster_id}/{gateway_id}/acl_policy"),
    ("AttachGatewayDomain", "PUT", "/api/v2/gateways/{cluster_id}/{gateway_id}/domain/attach"),
    ("DetachGatewayDomain", "PUT", "/api/v2/gateways/{cluster_id}/{gateway_id}/domain/detach"),
    ("ListGatewayDomains", "GET", "/api/v2/gateways/{cluster_id}/{gateway_id}/domains"),
    ("CreateGatewayIntranetLinkedVpc", "POST", "/api/v2/gateways/{cluster_id}/{gateway_id}/intranet_endpoint_linked_vpc"),
    ("DeleteGatewayIntranetLinkedVpc", "DELETE", "/api/v2/gateways/{cluster_id}/{gateway_id}/intranet_endpoint_linked_vpc"),
    ("ListGatewayIntranetLinkedVpc", "GET", "/api/v2/gateways/{cluster_id}/{gateway_id}/intranet_endpoint_linked_vpc"),
    ("CreateGatewayIntranetLinkedVpcPeer", "POST", "/api/v2/gateways/{cluster_id}/{gateway_id}/intranet_endpoint_linked_vpc_peer"),
    ("DeleteGatewayIntranetLinkedVpcPeer", "DELETE", "/api/v2/gateways/{cluster_id}/{gateway_id}/intranet_endpoint_linked_vpc_peer"),
    ("ListGatewayIntranetLinkedVpcPeer", "GET", "/api/v2/gateways/{cluster_id}/{gateway_id}/intranet_endpoint_linked_vpc_peer"),
    ("ListGatewayIntranetSupportedZone", "GET", "/api/v2/gateways/{cluster_id}/{gateway_id}/intranet_supported_zone"),
    ("ListGroups", "GET", "/api/v2/groups"),
    ("DescribeGroup", "GET", "/api/v2/groups/{cluster_id}/{group_name}"),
    ("DescribeGroupEndpoints", "GET", "/api/v2/groups/{cluster_id}/{group_name}/endpoints"),
    ("DescribeMachineSpec", "GET", "/api/v2/public/instance_types"),
    ("DescribeSpotDiscountHistory", "GET", "/api/v2/public/spot_discount"),
    ("DescribeRegions", "GET", "/api/v2/regions"),
    ("CreateResource", "POST", "/api/v2/resources"),
    ("ListResources", "GET", "/api/v2/resources"),
    ("DeleteResource", "DELETE", "/api/v2/resources/{cluster_id}/{resource_id}"),
    ("DescribeResource", "GET", "/api/v2/resources/{cluster_id}/{resource_id}"),
    ("UpdateResource", "PUT", "/api/v2/resources/{cluster_id}/{resource_id}"),
    ("DeleteResourceDLink", "DELETE", "/api/v2/resources/{cluster_id}/{resource_id}/dlink"),
    ("DescribeResourceDLink", "GET", "/api/v2/resources/{cluster_id}/{resource_id}/dlink"),
    ("UpdateResourceDLink", "PUT", "/api/v2/resources/{cluster_id}/{resource_id}/dlink"),
    ("ListResourceInstanceWorker", "GET", "/api/v2/resources/{cluster_id}/{resource_id}/instance/{instance_name}/workers"),
    ("CreateResourceInstances", "POST", "/api/v2/resources/{cluster_id}/{resource_id}/instances"),
    ("DeleteResourceInstances", "DELETE", "/api/v2/resources/{cluster_id}/{resource_id}/instances"),
    ("ListResourceInstances", "GET", "/api/v2/resources/{cluster_id}/{resource_id}/instances"),
    ("UpdateResourceInstance", "PUT", "/api/v2/resources/{cluster_id}/{resource_id}/instances/{instance_id}"),
    ("DeleteResourceInstanceLabel", "DELETE", "/api/v2/resources/{cluster_id}/{resource_id}/label"),
    ("UpdateResourceInstanceLabel", "PUT", "/api/v2/resources/{cluster_id}/{resource_id}/label"),
    ("CreateResourceLog", "POST", "/api/v2/resources/{cluster_id}/{resource_id}/log"),
    ("DeleteResourceLog", "DELETE", "/api/v2/resources/{cluster_id}/{resource_id}/log"),
    ("DescribeResourceLog", "GET", "/api/v2/resources/{cluster_id}/{resource_id}/log"),
    ("ListResourceServices", "GET", "/api/v2/resources/{cluster_id}/{resource_id}/services"),
    ("CreateService", "POST", "/api/v2/services"),
    ("ListServices", "GET", "/api/v2/services"),
    ("DeleteService", "DELETE", "/api/v2/services/{cluster_id}/{service_name}"),
    ("DescribeService", "GET", "/api/v2/services/{cluster_id}/{service_name}"),
    ("UpdateService", "PUT", "/api/v2/services/{cluster_id}/{service_name}"),
    ("CreateServiceAutoScaler", "POST", "/api/v2/services/{cluster_id}/{service_name}/autoscaler"),
    ("DeleteServiceAutoScaler", "DELETE", "/api/v2/services/{cluster_id}/{service_name}/autoscaler"),
    ("DescribeServiceAutoScaler", "GET", "/api/v2/services/{cluster_id}/{service_name}/autoscaler"),
    ("UpdateServiceAutoScaler", "PUT", "/api/v2/services/{cluster_id}/{service_name}/autoscaler"),
    ("CloneService", "POST", "/api/v2/services/{cluster_id}/{service_name}/clone"),
    ("CommitService", "PUT", "/api/v2/services/{cluster_id}/{service_name}/commit"),
    ("CreateServiceCronScaler", "POST", "/api/v2/services/{cluster_id}/{service_name}/cronscaler"),
    ("DeleteServiceCronScaler", "DELETE", "/api/v2/services/{cluster_id}/{service_name}/cronscaler"),
    ("DescribeServiceCronScaler", "GET", "/api/v2/services/{cluster_id}/{service_name}/cronscaler"),
    ("UpdateServiceCronScaler", "PUT", "/api/v2/services/{cluster_id}/{service_name}/cronscaler"),
    ("DevelopService", "PUT", "/api/v2/services/{cluster_id}/{service_name}/develop"),
    ("DescribeServiceDiagnosis", "GET", "/api/v2/services/{cluster_id}/{service_name}/diagnosis"),
    ("DescribeServiceEndpoints", "GET", "/api/v2/services/{cluster_id}/{service_name}/endpoints"),
    ("DescribeServiceEvent", "GET", "/api/v2/services/{cluster_id}/{service_name}/events"),
    ("DeleteServiceInstances", "DELETE", "/api/v2/services/{cluster_id}/{service_name}/instances"),
    ("ListServiceInstances", "GET", "/api/v2/services/{cluster_id}/{service_name}/instances"),
    ("UpdateServiceInstance", "PUT", "/api/v2/services/{cluster_id}/{service_name}/instances/{instance_name}"),
    ("ListServiceContainers", "GET", "/api/v2/services/{cluster_id}/{service_name}/instances/{instance_name}/containers"),
    ("DescribeServiceInstanceDiagnosis", "GET", "/api/v2/services/{cluster_id}/{service_name}/instances/{instance_name}/diagnosis"),
    ("DeleteServiceLabel", "DELETE", "/api/v2/services/{cluster_id}/{service_name}/label"),
    ("UpdateServiceLabel", "PUT", "/api/v2/services/{cluster_id}/{service_name}/label"),
    ("UpdateServiceSafetyLock", "PUT", "/api/v2/services/{cluster_id}/{service_name}/lock"),
    ("DescribeServiceLog", "GET", "/api/v2/services/{cluster_id}/{service_name}/logs"),
    ("CreateServiceMirror", "POST", "/api/v2/services/{cluster_id}/{service_name}/mirror"),
    ("DeleteServiceMirror", "DELETE", "/api/v2/services/{cluster_id}/{service_name}/mirror"),
    ("DescribeServiceMirror", "GET", "/api/v2/services/{cluster_id}/{service_name}/mirror"),
    ("UpdateServiceMirror", "PUT", "/api/v2/services/{cluster_id}/{service_name}/mirror"),
    ("ReleaseService", "PUT", "/api/v2/services/{cluster_id}/{service_name}/release"),
    ("RestartService", "PUT", "/api/v2/services/{cluster_id}/{service_name}/restart"),
    ("DescribeServiceSignedUrl", "GET", "/api/v2/services/{cluster_id}/{service_name}/signed_url"),
    ("StartService", "PUT", "/api/v2/services/{cluster_id}/{service_name}/start"),
    ("StopService", "PUT", "/api/v2/services/{cluster_id}/{service_name}/stop"),
    ("UpdateServiceVersion", "PUT", "/api/v2/services/{cluster_id}/{service_name}/version"),
    ("ListServiceVersions", "GET", "/api/v2/services/{cluster_id}/{service_name}/versions"),
    ("ListTenantAddons", "GET", "/api/v2/tenantaddons"),
    ("ReinstallTenantAddon", "PUT", "/api/v2/tenantaddons/{cluster_id}/{tenant_addon_name}/reinstall"),
    ("CreateVirtualResource", "POST", "/api/v2/virtualresources"),
    ("ListVirtualResource", "GET", "/api/v2/virtualresources"),
    ("DeleteVirtualResource", "DELETE", "/api/v2/virtualresources/{cluster_id}/{virtual_resource_id}"),
    ("DescribeVirtualResource", "GET", "/api/v2/virtualresources/{cluster_id}/{virtual_resource_id}"),
    ("UpdateVirtualResource", "PUT", "/api/v2/virtualresources/{cluster_id}/{virtual_resource_id}"),
)


@cache
def _patterns() -> tuple[tuple[str, str, re.Pattern], ...]:
    return tuple((name, method, re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", path) + "/?$"))
                 for name, method, path in EAS_OPERATIONS)


def eas_operation(method: str, path: str) -> str | None:
    """The name of the EAS operation a request is, or None. Pure."""
    return next((name for name, expected, pattern in _patterns()
                 if expected == method.upper() and pattern.match(path)), None)
