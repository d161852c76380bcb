from layerenv.cli.entry import main

main()
