#!/bin/bash
# tilecube on Coiled Batch: make the plan and run its shards; merge once they are done.
#   PLAN=s3://bucket/plans/glad STAGE=s3://bucket/stage/glad ./run.sh --all
# `ntasks` in shard.sh must equal the plan's shards (200 here). AWS credentials reach the
# tasks the way Coiled forwards them (its `forward_aws_credentials` option, or an instance
# role); the plan and stage hold none.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tilecube plan --shards 200 --out "${PLAN:?}" "$@"
coiled batch run --env "PLAN=$PLAN" --env "STAGE=${STAGE:?}" "$here/shard.sh"
echo "when \`tilecube status --plan $PLAN\` shows every shard done:"
echo "  tilecube merge --plan $PLAN --stage $STAGE"
