# Sourced by docker/local-base.sh and docker/build-local.sh (podman builds on this project's machines).
# `host_pip_mounts DIR` sets PIP_MOUNTS to podman `-v` arguments under which pip inside a build resolves
# packages as the host's pip does: the host's pip config (find-links, extra indexes, constraints) and the
# local directories it names, read-only, plus the host's CA bundle. The bundle matters: this network's
# egress proxy re-signs TLS with its own CA, which only the host's bundle trusts. The merged config is
# written to DIR (the caller removes it) and mounted as /etc/xdg/pip, a directory pip reads its site
# config from; the image keeps none of it.
host_pip_mounts() {
    local dir=$1 line
    mkdir -p "$dir"
    if [[ -d /etc/xdg/pip ]]; then cp -r /etc/xdg/pip/. "$dir/"; fi
    PIP_MOUNTS=(-v "$dir:/etc/xdg/pip:ro")
    while IFS= read -r line; do
        [[ -n $line ]] && PIP_MOUNTS+=(-v "$line:$line:ro")
    done < <(python3 - "$dir" << 'EOF'
import configparser
import os
import shutil
import sys

out = sys.argv[1]
conf = configparser.ConfigParser()
# pip's global and user config files, lowest precedence first, then its environment variables.
home = os.path.expanduser("~")
conf.read(["/etc/xdg/pip/pip.conf", "/etc/pip.conf", f"{home}/.pip/pip.conf", f"{home}/.config/pip/pip.conf"])
conf.read(os.environ.get("PIP_CONFIG_FILE", "") or [])
if not conf.has_section("global"):
    conf.add_section("global")
for key in ("index-url", "extra-index-url", "find-links", "constraint", "cert"):
    value = os.environ.get("PIP_" + key.upper().replace("-", "_"))
    if value:
        conf.set("global", key, value)
shutil.copyfile(conf.get("global", "cert", fallback="/etc/ssl/certs/ca-certificates.crt"),
                os.path.join(out, "ca-certificates.crt"))
conf.set("global", "cert", "/etc/xdg/pip/ca-certificates.crt")
mounts = set()
for key in ("index-url", "extra-index-url", "find-links"):
    for value in conf.get("global", key, fallback="").split():
        path = value.removeprefix("file://").rstrip("/")
        if path.startswith("/") and os.path.exists(path):
            # A local simple index links its files as ../../files/...: mount the index's parent.
            mounts.add(os.path.dirname(path) if path.endswith("/simple") else path)
constraint = conf.get("global", "constraint", fallback="")
if constraint and os.path.dirname(constraint) != "/etc/xdg/pip" and os.path.exists(constraint):
    mounts.add(constraint)
with open(os.path.join(out, "pip.conf"), "w") as f:
    conf.write(f)
print("\n".join(sorted(mounts)))
EOF
    )
}
