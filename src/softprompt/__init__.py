"""softprompt: soft-prompt tuning of frozen language models.

A method is a prompt *producer* (how vectors are made) placed at an injection *site*
(where they enter the frozen model), plus a head.
"""

__version__ = "0.1.0"
