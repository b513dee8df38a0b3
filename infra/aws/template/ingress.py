"""POST /v1/embeddings: the HTTP API's route to the dispatcher through a VPC link and Cloud Map.

No load balancer (ARCHITECTURE.md, "The online path on AWS"): ECS registers each healthy task in
a Cloud Map service (SRV records: address and port), and the HTTP API's private integration finds
the tasks there. HTTP API VPC links have no hourly charge; an ALB or NLB would add about $16/month
before any traffic. The route keeps the stack's AuthMode (IAM or JWT) like the other routes.
"""

from __future__ import annotations

from typing import Any

from infra.aws.template.common import (
    DISPATCHER_CONDITION,
    conditional,
    getatt,
    ref,
    sub,
)
from infra.aws.template.network import subnet_refs
from infra.aws.template.shared import API_INTEGRATION_TIMEOUT_MS, route

EMBEDDINGS_ROUTE = "POST /v1/embeddings"
NAMESPACE = "mbs.internal"  # a private hosted zone inside the stack's own VPC
DISCOVERY_TTL_S = 10  # how long a stopped task's record may linger in a resolver's cache


def ingress_resources() -> dict[str, Any]:
    """Cloud Map namespace and service, the VPC link, the integration and the route."""
    resources: dict[str, Any] = {
        "DispatcherNamespace": {"Type": "AWS::ServiceDiscovery::PrivateDnsNamespace",
                                "Properties": {
                                    "Name": NAMESPACE, "Vpc": ref("Vpc"),
                                    "Description": "MBS: where the dispatcher tasks register"}},
        "DispatcherDiscovery": {"Type": "AWS::ServiceDiscovery::Service", "Properties": {
            "Name": "dispatcher", "NamespaceId": ref("DispatcherNamespace"),
            "Description": "MBS dispatcher tasks (ECS registers the healthy ones)",
            "DnsConfig": {"RoutingPolicy": "MULTIVALUE",
                          "DnsRecords": [{"Type": "SRV", "TTL": DISCOVERY_TTL_S}]},
            # ECS reports each task's container health check to Cloud Map.
            "HealthCheckCustomConfig": {"FailureThreshold": 1}}},
        "VpcLink": {"Type": "AWS::ApiGatewayV2::VpcLink", "Properties": {
            "Name": sub("${AWS::StackName}-dispatcher"), "SubnetIds": subnet_refs(),
            "SecurityGroupIds": [ref("VpcLinkSecurityGroup")]}},
        "EmbeddingsIntegration": {
            "Type": "AWS::ApiGatewayV2::Integration", "Properties": {
                "ApiId": ref("HttpApi"), "IntegrationType": "HTTP_PROXY",
                "IntegrationMethod": "POST",
                "IntegrationUri": getatt("DispatcherDiscovery", "Arn"),
                "ConnectionType": "VPC_LINK", "ConnectionId": ref("VpcLink"),
                "PayloadFormatVersion": "1.0", "TimeoutInMillis": API_INTEGRATION_TIMEOUT_MS,
                # The dispatcher serves /v1/embeddings whatever the stage (API Gateway developer
                # guide, "private integrations": the stage name is otherwise prepended).
                "RequestParameters": {"overwrite:path": "$request.path"}}},
        "EmbeddingsRoute": route("Embeddings", EMBEDDINGS_ROUTE),
    }
    return conditional(resources, DISPATCHER_CONDITION)


def ingress_outputs() -> dict[str, Any]:
    return {"EmbeddingsEndpoint": {
        "Condition": DISPATCHER_CONDITION,
        "Description": "POST OpenAI-style embedding requests here (the online path)",
        "Value": sub("${HttpApi.ApiEndpoint}/v1/embeddings")}}
