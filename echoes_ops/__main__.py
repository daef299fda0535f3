from echoes_ops.cli.main import main

main()
