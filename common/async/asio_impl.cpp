// Asio and Beast compiled once for the whole project (separate compilation).
// Nothing else may include these *src* headers.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
