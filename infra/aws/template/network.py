"""The dispatcher's network: a VPC with two public subnets, no NAT gateway, two security groups.

The cheapest network that works (ARCHITECTURE.md, "The online path on AWS"): Fargate tasks get a
public IPv4 address and reach ECR, Lambda and CloudWatch Logs over the internet gateway. A NAT
gateway (about $33/month per AZ plus $0.045/GB) or interface endpoints for ECR, Lambda and Logs
($0.01/hour each per AZ) would cost more than the tasks' public addresses ($0.005/hour each).
Nothing can reach a task from the internet: its security group admits only the VPC link's.
"""

from __future__ import annotations

from typing import Any

from infra.aws.template.common import (
    DISPATCHER_CONDITION,
    DISPATCHER_PORT,
    conditional,
    getatt,
    ref,
    sub,
)

VPC_CIDR = "10.0.0.0/16"
# Two AZs: the VPC link and the ECS service spread over both, so one AZ outage leaves a path.
SUBNET_CIDRS = ("10.0.0.0/20", "10.0.16.0/20")
SUBNET_IDS = ("PublicSubnetA", "PublicSubnetB")
HTTPS_PORT = 443


def name_tags(name: str) -> list[dict[str, Any]]:
    """A Name tag: the stack name and `name`."""
    return [{"Key": "Name", "Value": sub(f"${{AWS::StackName}}-{name}")}]


def _subnets() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for index, (logical, cidr) in enumerate(zip(SUBNET_IDS, SUBNET_CIDRS, strict=True)):
        out[logical] = {"Type": "AWS::EC2::Subnet", "Properties": {
            "VpcId": ref("Vpc"), "CidrBlock": cidr,
            "AvailabilityZone": {"Fn::Select": [index, {"Fn::GetAZs": ""}]},
            "Tags": name_tags(f"public-{'ab'[index]}")}}
        out[f"{logical}Routes"] = {"Type": "AWS::EC2::SubnetRouteTableAssociation",
                                   "Properties": {"SubnetId": ref(logical),
                                                  "RouteTableId": ref("PublicRouteTable")}}
    return out


def _security_groups() -> dict[str, Any]:
    return {
        "VpcLinkSecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": "MBS VPC link: may only open connections to the dispatcher port",
            "VpcId": ref("Vpc"),
            # Replaces the default allow-all egress rule.
            "SecurityGroupEgress": [{
                "IpProtocol": "tcp", "FromPort": DISPATCHER_PORT, "ToPort": DISPATCHER_PORT,
                "CidrIp": VPC_CIDR, "Description": "to the dispatcher tasks in this VPC"}],
            "Tags": name_tags("vpc-link")}},
        "DispatcherSecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": "MBS dispatcher tasks: only the VPC link may connect",
            "VpcId": ref("Vpc"),
            "SecurityGroupIngress": [{
                "IpProtocol": "tcp", "FromPort": DISPATCHER_PORT, "ToPort": DISPATCHER_PORT,
                "SourceSecurityGroupId": getatt("VpcLinkSecurityGroup", "GroupId"),
                "Description": "from the API's VPC link only"}],
            # HTTPS out: ECR (image pull), Lambda (Invoke), CloudWatch Logs. Nothing else.
            "SecurityGroupEgress": [{
                "IpProtocol": "tcp", "FromPort": HTTPS_PORT, "ToPort": HTTPS_PORT,
                "CidrIp": "0.0.0.0/0",
                "Description": "AWS public endpoints: ECR, Lambda, CloudWatch Logs"}],
            "Tags": name_tags("dispatcher")}},
    }


def network_resources() -> dict[str, Any]:
    """VPC, internet gateway, two public subnets and their routes, the two security groups."""
    resources: dict[str, Any] = {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {
            "CidrBlock": VPC_CIDR,
            # Cloud Map's private DNS namespace needs both (Cloud Map developer guide).
            "EnableDnsSupport": True, "EnableDnsHostnames": True, "Tags": name_tags("vpc")}},
        "InternetGateway": {"Type": "AWS::EC2::InternetGateway",
                            "Properties": {"Tags": name_tags("igw")}},
        "GatewayAttachment": {"Type": "AWS::EC2::VPCGatewayAttachment", "Properties": {
            "VpcId": ref("Vpc"), "InternetGatewayId": ref("InternetGateway")}},
        "PublicRouteTable": {"Type": "AWS::EC2::RouteTable", "Properties": {
            "VpcId": ref("Vpc"), "Tags": name_tags("public")}},
        "PublicRoute": {"Type": "AWS::EC2::Route", "DependsOn": "GatewayAttachment",
                        "Properties": {"RouteTableId": ref("PublicRouteTable"),
                                       "DestinationCidrBlock": "0.0.0.0/0",
                                       "GatewayId": ref("InternetGateway")}},
        **_subnets(),
        **_security_groups(),
    }
    return conditional(resources, DISPATCHER_CONDITION)


def subnet_refs() -> list[dict[str, Any]]:
    """The public subnets, as the ECS service and the VPC link take them."""
    return [ref(logical) for logical in SUBNET_IDS]
