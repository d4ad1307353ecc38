"""Run pip as if on another platform, to check that unsmear resolves there.

pip's ``--platform`` picks wheels for the target but evaluates environment markers
(``sys_platform``, ``platform_machine``) on the host, so a dependency limited to some
platforms (decord) is still required. This sets the markers of the target too.

    python scripts/pip_as_platform.py macos-arm64 install --dry-run --ignore-installed \\
        --only-binary=:all: --platform macosx_14_0_arm64 --python-version 3.11 \\
        --target /tmp/t dist/unsmear-*.whl
"""

import sys

from pip._internal.cli.main import main
from pip._vendor.packaging import markers

# The markers that differ between the platforms we check and a Linux x86-64 host.
PLATFORMS = {
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin",
                    "platform_machine": "arm64"},
    "macos-x86_64": {"sys_platform": "darwin", "platform_system": "Darwin",
                     "platform_machine": "x86_64"},
    "linux-aarch64": {"sys_platform": "linux", "platform_system": "Linux",
                      "platform_machine": "aarch64"},
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in PLATFORMS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(PLATFORMS)}}} PIP_ARGS...")
    target = PLATFORMS[sys.argv.pop(1)]
    host = markers.default_environment
    markers.default_environment = lambda: {**host(), **target}
    sys.exit(main())
