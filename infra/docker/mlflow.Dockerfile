# The MLflow tracking server (infra/k8s/mlflow.yaml): PostgreSQL backend store, artifacts proxied to S3.
#   infra/docker/build.sh     # tags it as the manifests name it (stark-mlflow:<project version>)
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

LABEL org.opencontainers.image.title="stark-mlflow" \
      org.opencontainers.image.description="STARK tracker platform: MLflow server (PostgreSQL + S3)" \
      org.opencontainers.image.licenses="Apache-2.0"

# The server's MLflow matches the clients' (the worker image's) major version; psycopg2 for the
# postgresql:// backend store, boto3 for the s3:// artifact destination.
ARG MLFLOW_VERSION=3.17.2
RUN pip install --no-cache-dir "mlflow==${MLFLOW_VERSION}" psycopg2-binary boto3 \
 && useradd --create-home --uid 1000 mlflow
USER mlflow
WORKDIR /home/mlflow
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
