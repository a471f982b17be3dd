"""The command line of every tool: one `main` shape (`dpr.cli.main.run_main`) and one flag
vocabulary with its helpers (`dpr.cli.flags`; the table is docs/FLAGS.md)."""
