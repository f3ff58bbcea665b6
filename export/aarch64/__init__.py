"""The runtime on emulated Raspberry Pi CPUs against x86 (`scripts/check_aarch64.py`).

`host` checks the x86 host and runs its commands, `root` prepares the cached arm64 environment (qemu-user,
a Debian arm64 root, the aarch64 wheels), `guest` runs tumor-infer inside it, `compare` checks its answers
against the reference run, `report` writes what the check prints, `cli` is the command line.
"""
