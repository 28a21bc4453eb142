#!/usr/bin/env bash
# The whole build on Kubernetes: the four RayJobs in order, each started only once the one before it
# SUCCEEDED. Each job brings its own Ray cluster (KubeRay deletes it when the job ends).
#   kubectl create secret ...            # see docker/kuberay-secrets.yaml
#   bash docker/kuberay-build.sh         # re-run after a failure: finished stages are skipped
#   IMPORT=1 bash docker/kuberay-build.sh   # the import path: no training
# IMPORT=1 replaces the first stage, train-experts (rayjob-train-experts.yaml), by import-experts
# (rayjob-import-experts.yaml: JAT's released experts from the Hub, or a mirror, into the same experts
# dir); rollout, validate and publish are the same. Its cost beside training's: docs/scaling.md, "The
# import path". A finished RayJob counts as done: to switch paths after a build, delete the old jobs
# first (`kubectl delete rayjob jat-rollout jat-validate jat-publish`). Needs kubectl and the KubeRay
# operator >= 1.5.1 (authOptions). A stage whose retries are used up stops the build; fix the cause,
# `kubectl delete rayjob jat-STAGE`, and run the script again.
set -euo pipefail
cd "$(dirname "$0")"
STAGES=(train-experts rollout validate publish)
case "${IMPORT:-0}" in
  0) ;;
  1) STAGES[0]=import-experts ;;
  *)
    echo "IMPORT=${IMPORT}: give IMPORT=1 for the import path (released experts), or 0 to train" >&2
    exit 2
    ;;
esac
POLL_S=${POLL_S:-60}

for stage in "${STAGES[@]}"; do
  kubectl apply -f "rayjob-$stage.yaml"
  while true; do
    job=$(kubectl get rayjob "jat-$stage" -o jsonpath='{.status.jobStatus}/{.status.jobDeploymentStatus}')
    case "$job" in
      SUCCEEDED/*)
        echo "jat-$stage: SUCCEEDED"
        break
        ;;
      */Failed)
        echo "jat-$stage: failed ($job); logs: kubectl logs -l job-name=jat-$stage --tail=200" >&2
        exit 1
        ;;
    esac
    sleep "$POLL_S"
  done
done
echo "build done: every stage SUCCEEDED"
