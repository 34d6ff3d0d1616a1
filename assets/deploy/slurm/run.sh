#!/bin/bash
# The whole job on Slurm: make the plan, submit the shards as an array, and (with STAGE) a
# merge that runs when every shard succeeded.
#   PLAN=s3://bucket/plans/glad STAGE=s3://bucket/stage/glad SHARDS=200 \
#     ./run.sh --all            # any `tilecube plan` selection: --missing, --year 2020, …
# Watch it with: tilecube status --plan "$PLAN"
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${PLAN:?set PLAN}" "${SHARDS:?set SHARDS}"
# shellcheck disable=SC2086
"${TILECUBE:-tilecube}" ${TILECUBE_ARGS:-} plan --shards "$SHARDS" --out "$PLAN" "$@"
array=$(sbatch --parsable --export=ALL --array="0-$((SHARDS - 1))" "$here/shard.sbatch")
array=${array%%;*}
echo "shards: job $array"
if [ -n "${STAGE:-}" ]; then
  merge=$(sbatch --parsable --export=ALL --dependency="afterok:$array" "$here/merge.sbatch")
  echo "merge: job ${merge%%;*} (after $array succeeds)"
fi
