"""The command lines (autoexec, autoexec-server, sshcmd) and what only they use: progress views, dry run, admin modes."""
