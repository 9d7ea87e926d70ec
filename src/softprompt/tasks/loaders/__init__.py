"""One reader per distribution format; `softprompt.tasks.loading` picks the right one."""
