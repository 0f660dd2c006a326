# Third-party dependencies, all from Debian 12 packages (scripts/install-deps.sh).
find_package(Threads REQUIRED)
find_package(Boost 1.81 REQUIRED COMPONENTS system)
find_package(OpenSSL REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(SQLiteCpp REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx)
# libpq itself (a dependency of libpqxx): the router's PostgreSQL connections
# use its pipeline mode, which libpqxx 6.4 lacks (docs/dependencies.md).
pkg_check_modules(PQ REQUIRED IMPORTED_TARGET libpq)
find_package(GTest)
