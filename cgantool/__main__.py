from cgantool.cli import main

main()
