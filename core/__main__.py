from arrears_router.cli import main

main()
