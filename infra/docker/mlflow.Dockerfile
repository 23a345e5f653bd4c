# MLflow tracking server: the official image of the MLflow version pinned in constraints.txt
# (mlflow==3.17.2) plus what it needs here: the Postgres driver (backend store), boto3 (proxied
# S3 artifacts) and the `auth` extra (Flask-WTF, for --app-name basic-auth).
# Build from the repository root:  docker build -f infra/docker/mlflow.Dockerfile -t tucker-sweep-mlflow:3.17.2 .
FROM ghcr.io/mlflow/mlflow:v3.17.2

RUN python -m pip install --no-cache-dir \
        "mlflow[auth]==3.17.2" \
        psycopg2-binary==2.9.13 \
        boto3==1.44.5

COPY infra/docker/mlflow-entrypoint.sh /usr/local/bin/mlflow-entrypoint.sh
RUN chmod 0755 /usr/local/bin/mlflow-entrypoint.sh
ENTRYPOINT ["/usr/local/bin/mlflow-entrypoint.sh"]
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
