#!/usr/bin/env bash
# Point an existing MinIO at Kafka for DeepLens (needs `mc` and an alias for the server).
#   ALIAS=myminio ./configure.sh
set -euo pipefail
ALIAS=${ALIAS:-deeplens}
BROKERS=${BROKERS:-my-cluster-kafka-bootstrap.kafka.svc:9092}
TOPIC=${TOPIC:-deeplens-minio-events}

mc admin config set "$ALIAS" notify_kafka:deeplens \
  brokers="$BROKERS" topic="$TOPIC" queue_dir=/data/.notify-queue queue_limit=100000
mc admin service restart "$ALIAS"
# Existing tenant buckets (new ones get the rule from DeepLens itself):
for bucket in $(mc ls "$ALIAS" --json | sed -n 's/.*"key":"\(deeplens-[^/"]*\)\/.*/\1/p'); do
  mc event add "$ALIAS/$bucket" arn:minio:sqs::deeplens:kafka \
    --event put --prefix images/ --suffix /original || true
done
