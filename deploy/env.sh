# Sourced by the deploy and test scripts: where the stack lives and which
# ports it uses. Every value can be set from the environment, so two checkouts
# side by side only need different HOMING_STATE_DIR and ports.
HOMING_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${HOMING_STATE_DIR:=$HOMING_ROOT/.state}"
: "${HOMING_PG_PORT:=55432}"
: "${HOMING_KAFKA_PORT:=59092}"
: "${HOMING_KAFKA_CONTROLLER_PORT:=59093}"
: "${HOMING_HTTP_PORT:=58080}"
: "${HOMING_KAFKA_HEAP:=512m}"
export HOMING_ROOT HOMING_STATE_DIR HOMING_PG_PORT HOMING_KAFKA_PORT \
       HOMING_KAFKA_CONTROLLER_PORT HOMING_HTTP_PORT HOMING_KAFKA_HEAP

# What homing itself reads.
export HOMING_PG_DSN="host=127.0.0.1 port=$HOMING_PG_PORT dbname=homing user=homing"
export HOMING_KAFKA_BROKERS="127.0.0.1:$HOMING_KAFKA_PORT"
export HOMING_LISTEN="127.0.0.1:$HOMING_HTTP_PORT"
