# backend.nomad.hcl: the "backend" service under meshinit, with kuma-dp in
# direct mode (Kuma on Universal). meshinit starts the app, waits until it
# answers, starts kuma-dp with a Dataplane rendered from Nomad's runtime
# values, and on `nomad alloc stop` / a new deployment drains kuma-dp before
# the app is stopped. Nomad's service check polls meshinit's /ready, so a
# deployment moves on only once the new allocation's app is healthy and its
# kuma-dp is ready.
#
#   nomad var put nomad/jobs/backend kuma_token=@/path/to/dataplane-token
#   nomad job run -var kuma_cp_address=https://kuma-cp.internal:5678 backend.nomad.hcl
#
# The token is read from the file by `nomad var put` and reaches the task as
# secrets/kuma-token only: it is in no command line, job spec or environment.
# Generate it without a name (the name comes from the allocation) and bound
# to the service: `kumactl generate dataplane-token --mesh default
# --tag kuma.io/service=backend`.
#
# Tested by scripts/nomad-e2e with Nomad 1.6.5 (dev agent, raw_exec),
# kuma-cp and kuma-dp 2.14.3 and Envoy 1.37.0: three allocations rolled one
# at a time under load with no failed request, and `meshinit ctl status`,
# `out --no-wait` and `in` through `nomad alloc exec` (see the env block).
#
# Before changing a timeout below, have meshinit print the shutdown
# timeline for the same flags (worst case and budget check):
#
#   meshinit check --kuma-dp /usr/local/bin/kuma-dp --dataplane-file dp.yaml \
#     --dataplane-var ... --kuma-dp-arg=--drain-time=10s --drain-timeout 15s \
#     --app-stop-timeout 10s --shutdown-budget 30s -- /usr/local/bin/backend
#
# which ends with
#
#   Shutdown on TERM or INT (worst case):
#     1. drain: kuma-dp gets SIGTERM and drains; wait for it to exit, at most 15s (drain-timeout), then a second SIGTERM and SIGKILL 1s later
#     2. grace: the app keeps running for 0s (app-grace-delay)
#     3. stop: the app gets SIGTERM, SIGKILL after 10s (app-stop-timeout)
#     4. clean-up: leftover descendants get SIGTERM, SIGKILL after 2s; survivors are given up 1s later
#     worst case: 29s
#     shutdown budget: 30s (fits)

variable "kuma_cp_address" {
  type        = string
  description = "Kuma control plane (dataplane server) address"
  default     = "https://kuma-cp.service.consul:5678"
}

variable "kuma_cp_ca_cert" {
  type        = string
  description = "CA certificate kuma-dp verifies kuma-cp's dataplane server with (a file on the client host)"
  default     = "/etc/kuma/kuma-cp-ca.crt"
}

variable "meshinit_binary" {
  type    = string
  default = "/usr/bin/meshinit"
}

variable "kuma_dp_binary" {
  type    = string
  default = "/usr/local/bin/kuma-dp"
}

variable "envoy_binary" {
  type        = string
  description = "The Envoy kuma-dp runs (kuma-dp --binary-path)"
  default     = "/usr/local/bin/envoy"
}

variable "allocations" {
  type        = number
  description = "How many allocations; they are spread over the clients (see the spread block)"
  default     = 3
}

variable "backend_binary" {
  type        = string
  description = "The app; a new value is a new version, rolled out one allocation at a time"
  default     = "/usr/local/bin/backend"
}

job "backend" {
  datacenters = ["dc1"]
  type        = "service"

  group "backend" {
    # Three by default, replaced one at a time: the others keep serving
    # during each replacement.
    count = var.allocations

    # As evenly as possible over the clients (scripts/cluster-e2e: 6 on 3
    # clients, 2 on each), so that losing or draining one client takes only
    # its share away. Spread is a preference: with fewer clients (or one dev
    # agent) every allocation still finds a place.
    spread {
      attribute = "${node.unique.id}"
    }

    # A rolling update replaces one allocation at a time and moves on only
    # once the new one is healthy. With health_check = "checks", Nomad 1.6.5
    # (client/allochealth/tracker.go) counts an allocation healthy when all
    # its tasks have been running for min_healthy_time AND every Nomad
    # service check has been passing for min_healthy_time without a break; a
    # check that has not run yet is "pending" and counts as failing, and a
    # failure restarts the clock. Checks with on_update = "ignore" would not
    # count, so the check below keeps the default. (When a group has both
    # Consul and Nomad checks, only the Consul ones are watched.)
    # On one client the replacement starts only once the old allocation has
    # stopped (client/allocwatcher), so each step lasts the old one's drain
    # plus the new one's start plus min_healthy_time.
    update {
      max_parallel     = 1
      health_check     = "checks"
      # Clients learn of the new instance from kuma-cp once its Envoy's
      # health report arrives (every 5s by default, then a push): leave them
      # that long before the next old instance starts draining.
      min_healthy_time = "10s"
      # meshinit's own start-up bounds: --startup-timeout 60s for the app
      # plus --proxy-ready-timeout 60s for kuma-dp.
      healthy_deadline = "3m"
    }

    # `nomad node drain`: the allocations of a draining client are replaced
    # on the others one at a time, each once its replacement has passed its
    # checks for min_healthy_time (the same rules as the update block);
    # scripts/cluster-e2e drains a client under load with no failed request.
    migrate {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "10s"
      healthy_deadline = "3m"
    }

    network {
      # Dynamic ports, one set per allocation (raw_exec shares the host's
      # network namespace, so they must not collide between allocations).
      port "http" {}      # the app
      port "inbound" {}   # kuma-dp's inbound listener (Dataplane inbound.port)
      port "readiness" {} # kuma-dp's /ready (KUMA_READINESS_PORT)
      port "admin" {}     # Envoy admin
      port "status" {}    # meshinit's /ready, /live, /status (Nomad's check)
    }

    task "backend" {
      # raw_exec runs meshinit directly on the host, as the Nomad client's
      # user. With the isolating `exec` driver instead, the binaries must be
      # inside the task's chroot (Nomad's default chroot includes /usr, /bin).
      driver = "raw_exec"

      # meshinit's stop signals are TERM and INT; say TERM explicitly.
      kill_signal = "SIGTERM"

      # Nomad's default kill_timeout is 5s: after 5s it SIGKILLs the task,
      # which would cut kuma-dp's drain short and drop in-flight requests.
      # Size it from `meshinit check` (see the top of this file): worst case
      # = drain-timeout 15s + 1s to SIGKILL kuma-dp + app-grace-delay 0s +
      # app-stop-timeout 10s + 2s clean-up + 1s give-up = 29s, within 30s.
      # The same 30s is
      # given to meshinit as --shutdown-budget, so it warns at start (and
      # `meshinit check` fails) if the flags ever outgrow it.
      #
      # Nomad caps kill_timeout at the client's max_kill_timeout (30s by
      # default, in the client block of the agent configuration); meshinit's
      # own default worst case (drain-timeout 40s + app-stop-timeout 10s +
      # 4s of kill and clean-up bounds = 54s) does not fit in it, hence the shorter drain-timeout here. To
      # keep the 40s drain, raise max_kill_timeout on the clients and set
      # kill_timeout = "60s".
      kill_timeout = "30s"

      # Remove the allocation from service discovery a little before the
      # kill signal, so new requests stop arriving before the drain begins.
      # shutdown_delay = "5s"

      config {
        command = var.meshinit_binary
        args = [
          "--kuma-dp", var.kuma_dp_binary,
          "--cp-address", var.kuma_cp_address,
          "--dataplane-file", "${NOMAD_TASK_DIR}/dataplane.yaml",
          # Nomad's runtime variables become the Dataplane's template values.
          "--dataplane-var", "name=backend-${NOMAD_ALLOC_ID}",
          # The address Nomad reserved the inbound port on.
          "--dataplane-var", "address=${NOMAD_IP_inbound}",
          "--dataplane-var", "port=${NOMAD_PORT_inbound}",
          "--dataplane-var", "app_port=${NOMAD_PORT_http}",
          "--dataplane-var", "admin_port=${NOMAD_PORT_admin}",
          "--dataplane-var", "instance=${NOMAD_ALLOC_INDEX}",
          "--dataplane-token-file", "${NOMAD_SECRETS_DIR}/kuma-token",
          "--probe-http", "http://127.0.0.1:${NOMAD_PORT_http}/health",
          # kuma-dp drains for 30s by default; keep its drain inside
          # meshinit's drain-timeout, or it is told to stop mid-drain.
          "--kuma-dp-arg=--drain-time=10s",
          "--kuma-dp-arg=--ca-cert-file=${var.kuma_cp_ca_cert}",
          "--kuma-dp-arg=--binary-path=${var.envoy_binary}",
          # Without a transparent proxy nothing is sent to kuma-dp's DNS.
          "--kuma-dp-arg=--dns-enabled=false",
          "--drain-timeout", "15s",
          # The drain ends once the inbound is idle, but not before clients
          # can have learnt of it (kuma-cp's default HDS interval: ~7s).
          "--drain-min", "8s",
          "--app-grace-delay", "0s",
          "--app-stop-timeout", "10s",
          "--shutdown-budget", "30s",
          # Nomad's service check below polls /ready here.
          "--status-listen", "${NOMAD_ADDR_status}",
          "--log-format", "json",
          "--",
          var.backend_binary, "--port", "${NOMAD_PORT_http}",
        ]
      }

      env {
        # kuma-dp serves /ready here, and meshinit's default
        # --proxy-ready-url follows it.
        KUMA_READINESS_PORT = "${NOMAD_PORT_readiness}"
        # meshinit's control socket, for an operator:
        #   nomad alloc exec -task backend <alloc-id> meshinit ctl out
        # (then `in`, `status`): the exec'd command gets this environment,
        # so `ctl` needs no flag. Not in the allocation directory: a Unix
        # socket's path has at most 107 bytes, and <data_dir>/alloc/<alloc
        # id>/backend/local/ alone takes 107 with scripts/cluster-e2e's
        # data_dir. /run is root's (raw_exec runs tasks as the client's user,
        # root here); with a client running as another user, name a
        # directory it can write. Mode 0600, removed when meshinit exits.
        MESHINIT_CONTROL_SOCKET = "/run/meshinit-${NOMAD_ALLOC_ID}.sock"
      }

      # Nomad's view follows meshinit's: /ready answers 200 only while the
      # app is healthy and kuma-dp is ready (503 with the phase otherwise,
      # draining included), and the deployment counts this check (see the
      # update block).
      service {
        name     = "backend"
        provider = "nomad"
        port     = "inbound"
        check {
          name     = "meshinit-ready"
          type     = "http"
          port     = "status"
          path     = "/ready"
          interval = "1s"
          timeout  = "1s"
        }
      }

      # The Dataplane template. kuma-dp renders it with the --dataplane-var
      # values; its {{ }} placeholders must reach kuma-dp untouched, so
      # Nomad's own template engine is switched to [[ ]] for this file.
      template {
        destination     = "local/dataplane.yaml"
        left_delimiter  = "[["
        right_delimiter = "]]"
        data            = <<-EOT
          type: Dataplane
          mesh: default
          name: {{ name }}
          networking:
            address: {{ address }}
            admin:
              port: {{ admin_port }}
            inbound:
            - port: {{ port }}
              servicePort: {{ app_port }}
              serviceAddress: 127.0.0.1
              # Clients get this endpoint only once Envoy is ready and the
              # app's port answers: a new allocation joins losing nothing.
              serviceProbe:
                tcp: {}
              tags:
                kuma.io/service: backend
                kuma.io/protocol: http
                instance: "{{ instance }}"
        EOT
      }

      # The dataplane token, from Nomad Variables, readable by the task only.
      template {
        destination = "secrets/kuma-token"
        perms       = "600"
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/backend" }}{{ .kuma_token }}{{ end }}
        EOT
      }

      resources {
        cpu    = 300
        memory = 256
      }
    }
  }
}
