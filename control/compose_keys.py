"""The Compose specification's vocabulary as fastnet reads it: the keys of each section and
how a place in a Compose file is written in Compose's own terms (``services.web.ports[0]``)."""

from __future__ import annotations

from .source import ConfigError, KeyPath, SourceMap

# Keys of the Compose specification (compose-spec/schema/compose-spec.json). Those fastnet
# translates are handled by compose.py; the others are ignored with one warning. Keys in none of
# these lists are errors, as in `docker compose`. `x-*` extension keys are always allowed.
TOP_KEYS = ("version", "name", "services", "networks", "volumes", "secrets", "configs", "include", "models")
SERVICE_KEYS = (
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup", "cgroup_parent",
    "command", "configs", "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota",
    "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec", "depends_on",
    "deploy", "develop", "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname",
    "entrypoint", "env_file", "environment", "expose", "extends", "external_links", "extra_hosts", "gpus",
    "group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation", "label_file", "labels",
    "links", "logging", "mac_address", "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit",
    "models", "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit",
    "platform", "ports", "post_start", "pre_stop", "privileged", "profiles", "provider", "pull_policy",
    "pull_refresh_after", "read_only", "restart", "runtime", "scale", "secrets", "security_opt",
    "shm_size", "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs",
    "tty", "ulimits", "use_api_socket", "user", "userns_mode", "uts", "volumes", "volumes_from",
    "working_dir",
)
SERVICE_NETWORK_KEYS = (
    "aliases", "interface_name", "ipv4_address", "ipv6_address", "link_local_ips", "mac_address",
    "driver_opts", "priority", "gw_priority",
)
NETWORK_KEYS = (
    "attachable", "driver", "driver_opts", "enable_ipv4", "enable_ipv6", "external", "internal", "ipam",
    "labels", "name",
)
IPAM_KEYS = ("config", "driver", "options")
IPAM_CONFIG_KEYS = ("subnet", "ip_range", "gateway", "aux_addresses")
PORT_KEYS = ("name", "mode", "host_ip", "target", "published", "protocol", "app_protocol")
# fastnet's own settings that Compose has no key for, under a Compose extension key.
EXTENSION = "x-fastnet"
EXTENSION_KEYS = ("uplink", "backend", "conntrack", "publish_ephemeral_ports")


def render_path(path: KeyPath) -> str:
    """A Compose key path as Compose's own messages write it: services.web.ports[0]."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def compose_error(where: SourceMap, path: KeyPath, problem: str, *, key: bool = False) -> ConfigError:
    line, col = where.locate(path, key=key)
    return ConfigError(where.source, line + 1, col + 1, render_path(path), problem)
