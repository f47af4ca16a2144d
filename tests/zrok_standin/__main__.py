"""Entry point of the stand-in: `zrok2 ...` or `ziti ...`, chosen by the program name.

`python -m tests.zrok_standin zrok2 ...` and `... ziti ...` select the
command explicitly; the release archives' zipapps start here too.
"""

import os
import sys


def main():
    program = os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    if program not in ("zrok2", "ziti"):
        if argv and argv[0] in ("zrok2", "ziti"):
            program, argv = argv[0], argv[1:]
        else:
            sys.stderr.write("usage: python -m tests.zrok_standin {zrok2|ziti} ARGS...\n")
            return 2
    if program == "ziti":
        from .ziti_cli import main as ziti_main

        return ziti_main(argv)
    from .zrok2_cli import main as zrok2_main

    return zrok2_main(argv)


if __name__ == "__main__":
    sys.exit(main())
