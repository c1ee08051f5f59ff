# Sourced by tests/run and .ci/run: where the test stack lives. It has its
# own state directory and ports (HOMING_TEST_* override them), so tests never
# disturb a running deploy/quickstart.
tests_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export HOMING_STATE_DIR=${HOMING_TEST_STATE_DIR:-$tests_root/.state/test}
export HOMING_PG_PORT=${HOMING_TEST_PG_PORT:-55532}
export HOMING_KAFKA_PORT=${HOMING_TEST_KAFKA_PORT:-59192}
export HOMING_KAFKA_CONTROLLER_PORT=${HOMING_TEST_KAFKA_CONTROLLER_PORT:-59193}
export HOMING_HTTP_PORT=${HOMING_TEST_HTTP_PORT:-58180}
# libguestfs (guest files in a diff) asks qemu for KVM whenever /dev/kvm is
# there; on a VM without working nested virtualization (this project's test
# machine) the appliance then never comes up. TCG is slow but works.
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}
source "$tests_root/deploy/env.sh"
