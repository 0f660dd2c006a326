#pragma once
// The schema files (schema/sqlite.sql, schema/postgres.sql), embedded at
// build time by router/storage/CMakeLists.txt.
namespace koukan::router::schema {
extern const char* const kSqlite;
extern const char* const kPostgres;
}  // namespace koukan::router::schema
