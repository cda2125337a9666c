"""The public NSL-KDD schema: feature names, categorical vocabularies, attack families.

The vocabularies are fixed here (from the published KDD'99 / NSL-KDD feature definitions), so
that every member one-hot encodes identically without showing anyone its data.
"""

from __future__ import annotations

FEATURES: tuple[str, ...] = (
    "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land",
    "wrong_fragment", "urgent", "hot", "num_failed_logins", "logged_in", "num_compromised",
    "root_shell", "su_attempted", "num_root", "num_file_creations", "num_shells",
    "num_access_files", "num_outbound_cmds", "is_host_login", "is_guest_login", "count",
    "srv_count", "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate",
    "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate", "dst_host_count",
    "dst_host_srv_count", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate",
    "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
)  # fmt: skip

PROTOCOLS: tuple[str, ...] = ("tcp", "udp", "icmp")

SERVICES: tuple[str, ...] = (
    "IRC", "X11", "Z39_50", "aol", "auth", "bgp", "courier", "csnet_ns", "ctf", "daytime",
    "discard", "domain", "domain_u", "echo", "eco_i", "ecr_i", "efs", "exec", "finger", "ftp",
    "ftp_data", "gopher", "harvest", "hostnames", "http", "http_2784", "http_443", "http_8001",
    "imap4", "iso_tsap", "klogin", "kshell", "ldap", "link", "login", "mtp", "name",
    "netbios_dgm", "netbios_ns", "netbios_ssn", "netstat", "nnsp", "nntp", "ntp_u", "other",
    "pm_dump", "pop_2", "pop_3", "printer", "private", "red_i", "remote_job", "rje", "shell",
    "smtp", "sql_net", "ssh", "sunrpc", "supdup", "systat", "telnet", "tftp_u", "tim_i", "time",
    "urh_i", "urp_i", "uucp", "uucp_path", "vmnet", "whois",
)  # fmt: skip

FLAGS: tuple[str, ...] = (
    "OTH", "REJ", "RSTO", "RSTOS0", "RSTR", "S0", "S1", "S2", "S3", "SF", "SH",
)  # fmt: skip

CATEGORICAL: dict[str, tuple[str, ...]] = {
    "protocol_type": PROTOCOLS,
    "service": SERVICES,
    "flag": FLAGS,
}

# Heavy-tailed counts whose raw scale spans many orders of magnitude: log1p before scaling.
LOG_SCALED: frozenset[str] = frozenset(
    {
        "duration", "src_bytes", "dst_bytes", "hot", "num_failed_logins", "num_compromised",
        "num_root", "num_file_creations", "num_shells", "num_access_files", "count",
        "srv_count", "dst_host_count", "dst_host_srv_count",
    }
)  # fmt: skip

NORMAL = "normal"
FAMILIES: tuple[str, ...] = ("normal", "DoS", "Probe", "R2L", "U2R")
ATTACK_FAMILIES: tuple[str, ...] = FAMILIES[1:]

ATTACK_FAMILY: dict[str, str] = {
    **dict.fromkeys(
        ("back", "land", "neptune", "pod", "smurf", "teardrop", "apache2", "udpstorm",
         "processtable", "mailbomb"),
        "DoS",
    ),
    **dict.fromkeys(("satan", "ipsweep", "nmap", "portsweep", "mscan", "saint"), "Probe"),
    **dict.fromkeys(
        ("guess_passwd", "ftp_write", "imap", "phf", "multihop", "warezmaster", "warezclient",
         "spy", "xlock", "xsnoop", "snmpguess", "snmpgetattack", "httptunnel", "sendmail",
         "named", "worm"),
        "R2L",
    ),
    **dict.fromkeys(
        ("buffer_overflow", "loadmodule", "rootkit", "perl", "sqlattack", "xterm", "ps"), "U2R"
    ),
}  # fmt: skip


def family_of(label: str) -> str:
    """The family ('normal', 'DoS', 'Probe', 'R2L', 'U2R') of an NSL-KDD label."""
    if label == NORMAL:
        return NORMAL
    try:
        return ATTACK_FAMILY[label]
    except KeyError:
        raise ValueError(f"unknown NSL-KDD label {label!r}") from None
