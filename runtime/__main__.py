"""`python -m tumorscan SCAN...`: the same as `tumor-infer`."""

from .cli import infer_command

if __name__ == "__main__":
    infer_command(prog_name="tumor-infer")
