"""The `mbs` command: main.py holds the table of subcommands, one module each; common.py the
flags they share."""
