from inferenceops.cli import main

main()
