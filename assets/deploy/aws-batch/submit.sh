#!/bin/bash
# tilecube on AWS Batch: an array job of SHARDS tasks (AWS_BATCH_JOB_ARRAY_INDEX picks each
# one's shard), then a merge job that depends on the whole array. Credentials come from the
# job role (job-definition.json); the plan and stage hold none.
#   PLAN=s3://bucket/plans/glad STAGE=s3://bucket/stage/glad SHARDS=200 QUEUE=tilecube ./submit.sh --all
set -euo pipefail
: "${PLAN:?}" "${STAGE:?}" "${SHARDS:?}" "${QUEUE:?}"
tilecube plan --shards "$SHARDS" --out "$PLAN" "$@"
array=$(aws batch submit-job --job-name tilecube-shards --job-queue "$QUEUE" \
  --job-definition tilecube-shard --array-properties "size=$SHARDS" \
  --parameters "plan=$PLAN,stage=$STAGE" --query jobId --output text)
aws batch submit-job --job-name tilecube-merge --job-queue "$QUEUE" \
  --job-definition tilecube-shard --depends-on "jobId=$array" \
  --container-overrides "command=merge,--plan,$PLAN,--stage,$STAGE" --query jobId --output text
