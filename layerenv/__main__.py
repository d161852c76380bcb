from layerenv.entry import main

main()
