from layerenv.cli import main

main()
