"""The results bucket: where a job that asked for S3 output gets its results as one object.

Objects expire with the results they copy (the results table's TTL, 7 days by default), so the
bucket holds days of job outputs at most. Infer writes a job's part objects, ingest and the DLQ
function its FAILED lines (s3:PutObject on jobs/*); the results function reads the parts a job
item names and writes the assembled object; the owner downloads through a presigned URL.
"""

from __future__ import annotations

from typing import Any

from infra.aws.template.common import DELETE_WITH_STACK, checkov_skips, getatt, ref, sub

RESULT_OBJECT_DAYS = 7  # functions/shared/settings.py DEFAULT_RESULT_TTL_S, in days


def results_bucket() -> dict[str, Any]:
    """The bucket (private, encrypted, objects expiring) and its TLS-only policy."""
    skips = checkov_skips(
        ("CKV_AWS_18", "Access logs would need a second bucket; the API access log already "
                       "records every GET /v1/jobs/{id} that hands out a URL."),
        ("CKV_AWS_21", "Objects are derived copies that expire in days and are rewritten "
                       "whole; versions would only keep deleted copies around."),
    )
    return {
        # Delete with the stack: a non-empty bucket stops the delete until its objects expire.
        "ResultsBucket": {"Type": "AWS::S3::Bucket", **DELETE_WITH_STACK, "Metadata": skips,
                          "Properties": {
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True},
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LifecycleConfiguration": {"Rules": [
                {"Id": "expire-job-results", "Status": "Enabled",
                 "ExpirationInDays": RESULT_OBJECT_DAYS,
                 "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}}},
        "ResultsBucketPolicy": {"Type": "AWS::S3::BucketPolicy", "Properties": {
            "Bucket": ref("ResultsBucket"),
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
                "Action": "s3:*",
                "Resource": [getatt("ResultsBucket", "Arn"), sub("${ResultsBucket.Arn}/*")],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}}},
    }
