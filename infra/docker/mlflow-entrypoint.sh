#!/bin/sh
# Writes MLflow's basic-auth config from the environment, then runs the command (mlflow server).
# The auth config is an INI file whose database_uri holds a password, so it is generated at start
# from MLFLOW_AUTH_DATABASE_URI instead of being committed or baked into the image.
# Admin credentials come from MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD (read by
# MLflow itself; used only the first time, to create the admin in an empty user store).
set -eu

if [ -n "${MLFLOW_AUTH_DATABASE_URI:-}" ]; then
    : "${MLFLOW_AUTH_ADMIN_USERNAME:?set MLFLOW_AUTH_ADMIN_USERNAME}"
    : "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD}"
    : "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY}"
    case "$MLFLOW_AUTH_DATABASE_URI" in
        *%*) echo "MLFLOW_AUTH_DATABASE_URI must not contain '%' (use URL-safe passwords)" >&2
             exit 2 ;;
    esac
    config="${MLFLOW_AUTH_CONFIG_PATH:-/tmp/mlflow-basic-auth.ini}"
    umask 077
    cat > "$config" <<INI
[mlflow]
default_permission = READ
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
    export MLFLOW_AUTH_CONFIG_PATH="$config"
fi

exec "$@"
