# Sourced by the scripts: CI as every test of meshinit reads it (tests/common
# and src/testing.rs `in_ci`, scripts/e2e/meshlib.py `in_ci`): CI set, and
# not empty, "false" or "0". Under CI a suite that cannot run fails; elsewhere
# it says so loudly and exits 3.
in_ci() {
  local ci=${CI:-}
  [[ -n $ci && $ci != false && $ci != 0 ]]
}
