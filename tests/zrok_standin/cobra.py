"""Argument parsing that treats flag values the way the real CLIs (cobra and pflag) do."""

import argparse
import sys


class CobraParser(argparse.ArgumentParser):
    """An ArgumentParser whose flags take the next argument as their value even if it starts with `-`.

    pflag, which zrok2 and ziti parse their flags with, reads `--password -x1` as the password
    "-x1". argparse would take "-x1" for an unknown flag and fail, so a generated secret that
    happens to start with a dash would break the stand-in where the real binaries work.
    """

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._joined_dash_values(args), namespace)

    def _joined_dash_values(self, args: list[str]) -> list[str]:
        """Write `FLAG VALUE` as one argument where VALUE starts with `-`, which argparse then reads."""
        # Only this parser's own flags: subcommands get the rest of the arguments and join
        # theirs when they parse them, so a short flag can mean different things in each.
        long_form = {}
        for action in self._actions:
            if action.option_strings and action.nargs is None:
                longs = [option for option in action.option_strings if option.startswith("--")]
                for option in action.option_strings:
                    long_form[option] = longs[0] if longs else None
        joined = []
        index = 0
        while index < len(args):
            arg = args[index]
            if arg == "--":
                joined.extend(args[index:])
                break
            if arg in long_form and index + 1 < len(args) and args[index + 1].startswith("-"):
                value = args[index + 1]
                # `--flag=-x` keeps the value whole; a short flag without a long name takes it attached.
                joined.append(f"{long_form[arg]}={value}" if long_form[arg] else f"{arg}{value}")
                index += 2
                continue
            joined.append(arg)
            index += 1
        return joined
