"""Plan-independent parts of the SAM template: parameters, the HTTP API with its authorizer,
the ingest, results and dead-letter functions (Python zip packages), the table, shared alarms."""

from __future__ import annotations

from typing import Any

from infra.aws.template.common import (
    DELETE_WITH_STACK,
    DLQ_FUNCTION_TIMEOUT_S,
    DLQ_HANDLER,
    INGEST_HANDLER,
    LAMBDA_TASK_ROOT,
    LOG_RETENTION_DAYS,
    NO_VALUE,
    PYTHON_RUNTIME,
    RESULTS_HANDLER,
    TOKENIZER_DIR,
    RenderOptions,
    alarm_actions,
    allow,
    checkov_skips,
    getatt,
    if_,
    ref,
    sub,
)

AUTH_MODES = ("IAM", "JWT", "NONE")
# (route id, function prefix, route key): the routes of functions/ingest.py and results.py.
ROUTES = (
    ("Ingest", "Ingest", "POST /v1/requests"),
    ("Results", "Results", "GET /v1/requests/{id}"),
    ("ResultsList", "Results", "GET /v1/requests"),
    ("Jobs", "Results", "GET /v1/jobs/{id}"),
)
# HTTP API integrations time out after at most 30 s (API Gateway quotas, "HTTP API quotas").
API_INTEGRATION_TIMEOUT_MS = 29_000
HTTP_FUNCTION_TIMEOUT_S = 28  # under the integration timeout, so API Gateway sees our error


def parameters() -> dict[str, Any]:
    """Deploy-time choices; plan values are rendered into the template instead."""
    params: dict[str, Any] = {
        "AuthMode": {"Type": "String", "AllowedValues": list(AUTH_MODES), "Default": "IAM",
                     "Description": "API authorization: IAM (SigV4-signed requests, "
                     "execute-api:Invoke), JWT (an OIDC/OAuth2 issuer; set JwtIssuer and "
                     "JwtAudience), or NONE, which opens the API to anyone: for testing only."},
        "JwtIssuer": {"Type": "String", "Default": "",
                      "Description": "JWT issuer URL (AuthMode=JWT), e.g. a Cognito user pool "
                      "https://cognito-idp.REGION.amazonaws.com/POOL_ID"},
        "JwtAudience": {"Type": "CommaDelimitedList", "Default": "",
                        "Description": "Allowed JWT audiences / app client ids (AuthMode=JWT)"},
        "SloMs": {"Type": "Number", "Default": 1000, "MinValue": 1,
                  "Description": "Latency SLO in ms for the per-buffer SLO alarms"},
        "AlarmTopicArn": {"Type": "String", "Default": "",
                          "Description": "SNS topic ARN for alarm notifications (empty: none)"},
        "LogRetentionDays": {"Type": "Number", "Default": 14,
                             "AllowedValues": list(LOG_RETENTION_DAYS),
                             "Description": "Retention of the functions' and API's logs"},
        "ApiThrottleRatePerS": {"Type": "Number", "Default": 100, "MinValue": 1,
                                "Description": "Steady-state request rate limit of the API"},
        "ApiThrottleBurst": {"Type": "Number", "Default": 200, "MinValue": 1,
                             "Description": "Burst request limit of the API"},
    }
    return params


def conditions() -> dict[str, Any]:
    return {
        "AuthIsIam": {"Fn::Equals": [ref("AuthMode"), "IAM"]},
        "AuthIsJwt": {"Fn::Equals": [ref("AuthMode"), "JWT"]},
        "HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [ref("AlarmTopicArn"), ""]}]},
    }


def rules() -> dict[str, Any]:
    """JWT needs an issuer (or no token is accepted) and an audience (or any token of the issuer,
    whatever client it was issued to, is): refuse either gap at deploy time."""
    is_jwt = {"Fn::Equals": [ref("AuthMode"), "JWT"]}
    return {
        "JwtNeedsIssuer": {"RuleCondition": is_jwt, "Assertions": [{
            "Assert": {"Fn::Not": [{"Fn::Equals": [ref("JwtIssuer"), ""]}]},
            "AssertDescription": "AuthMode=JWT needs JwtIssuer"}]},
        # An empty CommaDelimitedList is [""]; Fn::Contains also refuses an empty entry ("a,,b").
        "JwtNeedsAudience": {"RuleCondition": is_jwt, "Assertions": [{
            "Assert": {"Fn::Not": [{"Fn::Contains": [ref("JwtAudience"), ""]}]},
            "AssertDescription": "AuthMode=JWT needs JwtAudience (no empty entry)"}]},
    }


_HTTP_FUNCTION_SKIPS = checkov_skips(
    ("CKV_AWS_116", "Invoked synchronously by API Gateway, which returns the error to the "
                    "client; an asynchronous-invocation DLQ would never receive anything."),
    ("CKV_AWS_117", "The function calls only SQS, DynamoDB, S3 and CloudWatch Logs public "
                    "endpoints; a VPC would add NAT cost and cold-start latency for nothing."),
    ("CKV_AWS_115", "The API stage's throttling (ApiThrottleRatePerS, ApiThrottleBurst) caps "
                    "load; reserving concurrency fails on accounts with the default quota."),
    ("CKV_AWS_173", "The variables hold no secrets (table name, queue URLs, the plan); Lambda "
                    "encrypts them at rest with an AWS managed key."),
)


_DLQ_FUNCTION_SKIPS = checkov_skips(
    ("CKV_AWS_116", "This function consumes the dead-letter queues; a record it fails on stays "
                    "in its DLQ (14 days) and raises the DLQ depth alarm."),
    ("CKV_AWS_117", "The function calls only SQS, DynamoDB and CloudWatch Logs public "
                    "endpoints; a VPC would add NAT cost and ENI set-up for nothing."),
    ("CKV_AWS_115", "Concurrency is capped by each DLQ mapping's MaximumConcurrency (2)."),
    ("CKV_AWS_173", "The variables hold no secrets (table name, queue URLs, the plan); Lambda "
                    "encrypts them at rest with an AWS managed key."),
)


def _zip_function(prefix: str, handler: str, memory_mb: int, timeout_s: int,
                  policies: list[Any], opts: RenderOptions, extra_env: dict[str, str],
                  skips: dict[str, Any]) -> dict[str, Any]:
    return {"Type": "AWS::Serverless::Function", "Metadata": skips,
            "Properties": {
                "Description": f"MBS {prefix.lower()}: {handler}",
                "CodeUri": opts.code_dir, "Handler": handler, "Runtime": PYTHON_RUNTIME,
                "MemorySize": memory_mb, "Timeout": timeout_s,
                "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": prefix.lower(),
                                              **extra_env}},
                "Policies": policies}}


def functions(queue_ids: list[str], dlq_ids: list[str], opts: RenderOptions) -> dict[str, Any]:
    """The ingest, results and dead-letter functions (zip packages built by `sam build`)."""
    table = getatt("ResultsTable", "Arn")
    ingest_policies = [
        # PENDING writes (PutItem for one text, BatchWriteItem for a list), a job record
        # (PutItem), FAILED on enqueue error (a conditional update, then a consistent read).
        allow(["dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:UpdateItem",
               "dynamodb:GetItem"], table),
        # Enqueue (sqs:SendMessage also authorizes SendMessageBatch), and read the depth for
        # backpressure. Listed exactly: SAM's SQSSendMessagePolicy grants sqs:SendMessage*.
        allow(["sqs:SendMessage", "sqs:GetQueueAttributes"], [getatt(q, "Arn") for q in queue_ids]),
        # A job's FAILED lines for texts that could not be enqueued (jobs/ only).
        allow(["s3:PutObject"], sub("${ResultsBucket.Arn}/jobs/*")),
    ]
    results_policies = [
        allow(["dynamodb:GetItem", "dynamodb:BatchGetItem"], table),
        # A finished job's object: assembled from its parts (named by the job item, so no
        # listing), written once, read back through a presigned URL that this role signs
        # (HeadObject needs s3:GetObject too). Only the jobs/ prefix.
        allow(["s3:PutObject", "s3:GetObject"], sub("${ResultsBucket.Arn}/jobs/*")),
    ]
    # functions/dlq.py reads the request, then marks it FAILED (a conditional update); for a
    # job's text it reads infer's noted error and writes a FAILED line (jobs/ only).
    dlq_policies = [
        allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], table),
        allow(["s3:PutObject", "s3:GetObject"], sub("${ResultsBucket.Arn}/jobs/*")),
        *({"SQSPollerPolicy": {"QueueName": getatt(q, "QueueName")}} for q in dlq_ids),
    ]
    tokenizer = {"MBS_MODEL_DIR": f"{LAMBDA_TASK_ROOT}/{TOKENIZER_DIR}"}
    out = {
        "IngestFunction": _zip_function("Ingest", INGEST_HANDLER, opts.ingest_memory_mb,
                                        HTTP_FUNCTION_TIMEOUT_S, ingest_policies, opts,
                                        tokenizer, _HTTP_FUNCTION_SKIPS),
        "ResultsFunction": _zip_function("Results", RESULTS_HANDLER, opts.results_memory_mb,
                                         HTTP_FUNCTION_TIMEOUT_S, results_policies, opts, {},
                                         _HTTP_FUNCTION_SKIPS),
        "DlqFunction": _zip_function("Dlq", DLQ_HANDLER, opts.results_memory_mb,
                                     DLQ_FUNCTION_TIMEOUT_S, dlq_policies, opts, {},
                                     _DLQ_FUNCTION_SKIPS),
    }
    for prefix in ("Ingest", "Results", "Dlq"):
        out[f"{prefix}LogGroup"] = log_group(sub(f"/aws/lambda/${{{prefix}Function}}"))
    return out


def log_group(name: Any) -> dict[str, Any]:
    return {"Type": "AWS::Logs::LogGroup", **DELETE_WITH_STACK,
            "Metadata": checkov_skips(("CKV_AWS_158", "The logs hold no request text; "
                                       "CloudWatch Logs encrypts them at rest by default.")),
            "Properties": {"LogGroupName": name, "RetentionInDays": ref("LogRetentionDays")}}


def api() -> dict[str, Any]:
    """HTTP API, $default stage with access logs and throttling, routes, authorizer."""
    out: dict[str, Any] = {
        "HttpApi": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {
            "Name": sub("${AWS::StackName}-api"), "ProtocolType": "HTTP",
            "Description": "MBS: POST /v1/requests, GET /v1/requests/{id}, "
                           "GET /v1/requests?ids=, GET /v1/jobs/{id}"}},
        "ApiAccessLogGroup": log_group(sub("/mbs/${AWS::StackName}/api-access")),
        "ApiStage": {"Type": "AWS::ApiGatewayV2::Stage", "Properties": {
            "ApiId": ref("HttpApi"), "StageName": "$default", "AutoDeploy": True,
            "AccessLogSettings": {"DestinationArn": getatt("ApiAccessLogGroup", "Arn"),
                                  "Format": _ACCESS_LOG_FORMAT},
            "DefaultRouteSettings": {"ThrottlingRateLimit": ref("ApiThrottleRatePerS"),
                                     "ThrottlingBurstLimit": ref("ApiThrottleBurst")}}},
        "JwtAuthorizer": {"Type": "AWS::ApiGatewayV2::Authorizer", "Condition": "AuthIsJwt",
                          "Properties": {
                              "ApiId": ref("HttpApi"), "Name": "jwt", "AuthorizerType": "JWT",
                              "IdentitySource": ["$request.header.Authorization"],
                              "JwtConfiguration": {"Issuer": ref("JwtIssuer"),
                                                   "Audience": ref("JwtAudience")}}},
    }
    for route_id, prefix, route_key in ROUTES:
        method, path = route_key.split(" ")
        arn_path = path.replace("{id}", "*")
        out[f"{prefix}Integration"] = {"Type": "AWS::ApiGatewayV2::Integration", "Properties": {
            "ApiId": ref("HttpApi"), "IntegrationType": "AWS_PROXY",
            "IntegrationUri": getatt(f"{prefix}Function", "Arn"),
            "PayloadFormatVersion": "2.0", "TimeoutInMillis": API_INTEGRATION_TIMEOUT_MS}}
        out[f"{route_id}Route"] = route(prefix, route_key)
        out[f"{route_id}ApiPermission"] = {"Type": "AWS::Lambda::Permission", "Properties": {
            "Action": "lambda:InvokeFunction", "FunctionName": ref(f"{prefix}Function"),
            "Principal": "apigateway.amazonaws.com",
            "SourceArn": sub("arn:${AWS::Partition}:execute-api:${AWS::Region}:"
                             f"${{AWS::AccountId}}:${{HttpApi}}/*/{method}{arn_path}")}}
    return out


def route(prefix: str, route_key: str) -> dict[str, Any]:
    """A route to `{prefix}Integration` under the stack's AuthMode (IAM, JWT or NONE)."""
    return {"Type": "AWS::ApiGatewayV2::Route", "Properties": {
        "ApiId": ref("HttpApi"), "RouteKey": route_key,
        "Target": sub(f"integrations/${{{prefix}Integration}}"),
        "AuthorizationType": if_("AuthIsIam", "AWS_IAM", if_("AuthIsJwt", "JWT", "NONE")),
        "AuthorizerId": if_("AuthIsJwt", ref("JwtAuthorizer"), NO_VALUE)}}


_ACCESS_LOG_FORMAT = ('{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",'
                      '"routeKey":"$context.routeKey","status":"$context.status",'
                      '"latencyMs":"$context.responseLatency",'
                      '"integrationError":"$context.integrationErrorMessage"}')


def table() -> dict[str, Any]:
    """Results: one item per request, key id (S), TTL on expires_at_s, encrypted, on demand."""
    return {"ResultsTable": {
        "Type": "AWS::DynamoDB::Table",
        **DELETE_WITH_STACK,  # results expire within days anyway
        "Metadata": checkov_skips(("CKV_AWS_119", "Encrypted at rest with the AWS managed KMS "
                                   "key aws/dynamodb (SSEEnabled); a customer managed key adds "
                                   "cost and no value for embeddings that expire in days.")),
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": "expires_at_s", "Enabled": True},
            "SSESpecification": {"SSEEnabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}}}}


def metric_alarm(description: str, namespace: str, metric: str,
                 dimensions: list[tuple[str, Any]], statistic: str = "Sum",
                 threshold: float = 0, comparison: str = "GreaterThanThreshold",
                 periods: int = 1, missing: str = "notBreaching",
                 period_s: int = 60) -> dict[str, Any]:
    """A one-metric alarm (60 s periods unless told) that notifies AlarmTopicArn if given."""
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmDescription": description, "Namespace": namespace, "MetricName": metric,
        "Dimensions": [{"Name": name, "Value": value} for name, value in dimensions],
        "Statistic": statistic, "Period": period_s, "EvaluationPeriods": periods,
        "Threshold": threshold, "ComparisonOperator": comparison, "TreatMissingData": missing,
        "AlarmActions": alarm_actions()}}


def count_alarm(description: str, namespace: str, metric: str,
                dimension: tuple[str, Any]) -> dict[str, Any]:
    """Any occurrence in a minute alarms (Sum > 0)."""
    return metric_alarm(description, namespace, metric, [dimension])


def shared_alarms() -> dict[str, Any]:
    """API 5xx, and dead letters: each DLQ consumer invocation handles requests that FAILED."""
    return {
        "Api5xxAlarm": count_alarm("MBS API: 5xx responses on any route",
                                    "AWS/ApiGateway", "5xx", ("ApiId", ref("HttpApi"))),
        "DeadLettersAlarm": count_alarm(
            "MBS: requests dead-lettered after their retries (marked FAILED)", "AWS/Lambda",
            "Invocations", ("FunctionName", ref("DlqFunction"))),
    }


def shared_outputs() -> dict[str, Any]:
    def out(description: str, value: Any) -> dict[str, Any]:
        return {"Description": description, "Value": value}

    return {
        "ApiUrl": out("Base URL of the HTTP API", getatt("HttpApi", "ApiEndpoint")),
        "ApiId": out("HTTP API id", ref("HttpApi")),
        "AuthMode": out("API authorization in force", ref("AuthMode")),
        "SubmitEndpoint": out("POST a request here", sub("${HttpApi.ApiEndpoint}/v1/requests")),
        "ResultEndpoint": out("GET a result here", sub("${HttpApi.ApiEndpoint}/v1/requests/{id}")),
        "JobEndpoint": out("GET a job (S3 output) here",
                           sub("${HttpApi.ApiEndpoint}/v1/jobs/{id}")),
        "ResultsBucketName": out("S3 bucket of jobs' results", ref("ResultsBucket")),
        "ResultsTableName": out("DynamoDB results table", ref("ResultsTable")),
        "ResultsTableArn": out("DynamoDB results table ARN", getatt("ResultsTable", "Arn")),
        "IngestFunctionName": out("ingest function", ref("IngestFunction")),
        "IngestFunctionArn": out("ingest function ARN", getatt("IngestFunction", "Arn")),
        "ResultsFunctionName": out("results function", ref("ResultsFunction")),
        "ResultsFunctionArn": out("results function ARN", getatt("ResultsFunction", "Arn")),
        "DlqFunctionName": out("dead-letter consumer function", ref("DlqFunction")),
        "DashboardName": out("CloudWatch dashboard", ref("Dashboard")),
        "ApiAccessLogGroupName": out("API access logs", ref("ApiAccessLogGroup")),
    }
