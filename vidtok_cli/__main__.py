from vidtok_cli.cli import main

main()
