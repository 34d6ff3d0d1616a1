#!/bin/bash
# One shard of a tilecube plan per Coiled Batch task (COILED_BATCH_TASK_ID picks it).
# COILED ntasks 200
# COILED vm-type m7i.2xlarge
# COILED container tilecube:latest
set -euo pipefail
exec tilecube write --plan "${PLAN:?}" --shard auto --stage "${STAGE:?}" --threads 8
