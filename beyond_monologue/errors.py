"""Error types raised on bad user input.

Every message names the input (node input, file or folder) and says how to fix it, so that
ComfyUI's red node error is enough for a user to act on. Raising one of these never leaves
state behind: the server stays up and the next prompt runs.
"""


class BMInputError(ValueError):
    """A node input, workflow value or file given by the user cannot be used.

    Args:
        input_name: the node input, widget or file the problem is in (e.g. ``"conversation"``).
        problem: what is wrong, in one sentence.
        fix: what the user should do instead.
    """

    def __init__(self, input_name: str, problem: str, fix: str):
        self.input_name = input_name
        self.problem = problem
        self.fix = fix
        super().__init__(f"{input_name}: {problem} Fix: {fix}")
