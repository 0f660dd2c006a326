#include "gateway/inbound/smtp_service.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <deque>
#include <list>
#include <map>

#include <fmt/core.h>

#include "common/base/log.hpp"
#include "common/base/metrics.hpp"
#include "common/http/client.hpp"
#include "common/smtp/server_session.hpp"
#include "common/smtp/tcp_stream.hpp"
#include "gateway/inbound/router_tx.hpp"

namespace koukan::gateway {

namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

metrics::Metric m_sessions("koukan_smtp_sessions_total", "SMTP connections accepted", "counter");
metrics::Metric m_open("koukan_smtp_sessions_open", "SMTP connections open", "gauge");
metrics::Metric m_msgs("koukan_smtp_messages_total", "messages answered at end of data", "counter");

std::chrono::milliseconds ms(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

Response upstream_error(const Error& e) {
  if (e.code == Errc::timeout) return Response(451, "4.4.2 upstream timeout (gateway): " + e.message);
  return Response(451, "4.4.1 upstream unavailable (gateway): " + e.message);
}

const Response kAborted(451, "4.3.0 transaction aborted after an upstream error (gateway); RSET and try again");

std::atomic<std::uint64_t> g_conn_id{0};

// Relays one SMTP session's transactions to the router.
class InboundHandler final : public smtp::ServerHandler {
 public:
  InboundHandler(const SmtpServiceConfig& svc, const RestOutputConfig& ro, http::Client& client,
                 const smtp::AuthSecrets* secrets, log::Logger lg)
      : svc_(svc), ro_(ro), client_(client), secrets_(secrets), lg_(std::move(lg)) {}

  Task<Response> on_mail(const smtp::SessionInfo& s, const Mailbox& from) override {
    const std::vector<Mailbox> none;
    co_return co_await start(s, from, none);
  }

  // The client pipelined RCPTs behind MAIL: one create carries them all (no
  // PATCH per recipient); their on_rcpt calls are answered from it.
  Task<Response> on_mail_pipelined(const smtp::SessionInfo& s, const Mailbox& from,
                                   const std::vector<Mailbox>& next_rcpts) override {
    co_return co_await start(s, from, next_rcpts);
  }

  Task<Response> start(const smtp::SessionInfo& s, const Mailbox& from, const std::vector<Mailbox>& rcpts) {
    tx_ = std::make_unique<RouterTx>(client_, ro_.endpoint, lg_);
    failed_ = false;
    prefetched_.clear();
    TransactionMetadata t;
    t.rcpt_to = rcpts;
    t.remote_host = s.remote;
    t.local_host = s.local;
    t.mail_from = from;
    json::object meta;
    meta["ehlo_host"] = s.ehlo_host;
    meta["esmtp"] = s.esmtp;
    meta["tls"] = s.tls;
    if (s.auth_user) meta["auth"] = true;
    else meta["auth"] = nullptr;  // as the original: null when not authenticated
    t.smtp_meta = std::move(meta);
    Sender snd;
    snd.name = svc_.sender;
    snd.tag = svc_.tag;
    t.sender = snd;
    auto wait = std::min(ms(svc_.mail_timeout), ms(ro_.rcpt_timeout));
    if (!rcpts.empty()) wait = std::max(wait, std::min(ms(svc_.rcpt_timeout), ms(ro_.rcpt_timeout)));
    auto r = co_await tx_->create(t, Clock::now() + wait);
    if (!r.ok()) {
      lg_.warn("MAIL: {}", r.error().message);
      co_await tx_->cancel();
      tx_.reset();
      co_return upstream_error(r.error());
    }
    if (!r->ok()) {
      tx_.reset();  // the engine opens no transaction
    } else {
      lg_.info("MAIL accepted, router tx {}", tx_->url());
      for (std::size_t i = 0; i < rcpts.size(); ++i) {
        auto rr = tx_->rcpt_response(i);
        prefetched_.emplace_back(rcpts[i], rr ? *rr : Response(451, "4.3.0 no RCPT response (gateway)"));
      }
    }
    co_return *r;
  }

  Task<Response> on_rcpt(const smtp::SessionInfo&, const Mailbox& to) override {
    if (!tx_ || failed_) co_return kAborted;
    if (!prefetched_.empty()) {
      // Sent with the create (pipelined); the engine calls on_rcpt for each
      // of them in order.
      auto [sent, resp] = std::move(prefetched_.front());
      prefetched_.pop_front();
      if (sent.mailbox == to.mailbox && sent.esmtp == to.esmtp) co_return resp;
      lg_.error("RCPT {} is not the pipelined {} sent to the router; aborting the transaction",
                to.mailbox, sent.mailbox);
      prefetched_.clear();
      co_await abort();
      co_return kAborted;
    }
    auto deadline = Clock::now() + std::min(ms(svc_.rcpt_timeout), ms(ro_.rcpt_timeout));
    auto r = co_await tx_->add_rcpt(to, deadline);
    if (!r.ok()) {
      lg_.warn("RCPT: {}", r.error().message);
      co_await abort();
      co_return upstream_error(r.error());
    }
    co_return *r;
  }

  Task<std::optional<Response>> on_data(std::string_view piece, bool last) override {
    if (!tx_ || failed_) co_return kAborted;
    // PUT in rest_output.chunk_size pieces; only the final one is `last`.
    const std::size_t max = static_cast<std::size_t>(ro_.chunk_size);
    Clock::time_point data_deadline{};
    do {
      std::string_view part = piece.substr(0, std::min(piece.size(), max));
      piece.remove_prefix(part.size());
      const bool end = last && piece.empty();
      std::optional<std::chrono::milliseconds> await;
      if (end) {
        // The data response is waited for from the last PUT on; the router
        // may hold that PUT until it has it (no GET then).
        data_deadline = Clock::now() + ms(data_response_wait());
        await = ms(data_response_wait());
      }
      auto r = co_await tx_->put_body(part, end, ms(ro_.data_timeout), await);
      if (!r.ok()) {
        lg_.warn("DATA: {}", r.error().message);
        co_await abort();
        co_return upstream_error(r.error());
      }
    } while (!piece.empty());
    if (!last) co_return std::nullopt;
    auto d = co_await tx_->wait_data(data_deadline);
    if (!d.ok()) {
      lg_.warn("DATA response: {}", d.error().message);
      co_await abort();
      co_return upstream_error(d.error());
    }
    m_msgs.inc();
    lg_.info("end of data: {} {} ({} bytes)", d->code, d->message, tx_->body_offset());
    tx_.reset();
    co_return *d;
  }

  Task<void> on_reset(smtp::ResetReason) override {
    if (tx_) co_await tx_->cancel();
    tx_.reset();
    prefetched_.clear();
    failed_ = false;
  }

  Task<void> on_heartbeat() override {
    if (!tx_ || failed_) co_return;
    auto r = co_await tx_->heartbeat(std::chrono::seconds(10));
    if (!r.ok()) lg_.info("heartbeat: {}", r.error().message);
  }

  bool authenticate(std::string_view user, std::string_view password) override {
    const bool ok = secrets_ && secrets_->check(user, password);
    lg_.info("AUTH {} for '{}'", ok ? "ok" : "failed", std::string(user));
    return ok;
  }

 private:
  double data_response_wait() const {
    return ro_.data_response_timeout ? *ro_.data_response_timeout : svc_.data_timeout;
  }

  Task<void> abort() {
    failed_ = true;
    if (tx_) co_await tx_->cancel();
  }

  const SmtpServiceConfig& svc_;
  const RestOutputConfig& ro_;
  http::Client& client_;
  const smtp::AuthSecrets* secrets_;
  log::Logger lg_;
  std::unique_ptr<RouterTx> tx_;
  // Recipients sent with the create and the router's answers, for the
  // on_rcpt calls that follow.
  std::deque<std::pair<Mailbox, Response>> prefetched_;
  bool failed_ = false;
};

struct Listener {
  const SmtpServiceConfig* svc = nullptr;
  const RestOutputConfig* ro = nullptr;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::shared_ptr<smtp::TlsContext> tls;
  std::optional<smtp::AuthSecrets> secrets;
  smtp::ServerOptions opts;
  http::Client* client = nullptr;
};

}  // namespace

struct SmtpService::Impl : std::enable_shared_from_this<SmtpService::Impl> {
  asio::io_context& io;
  const GatewayConfig& cfg;
  std::list<Listener> listeners;
  std::map<std::string, std::unique_ptr<http::Client>> clients;  // per verify setting
  std::list<smtp::ByteStream*> open;  // for stop()
  bool stopping = false;

  Impl(asio::io_context& i, const GatewayConfig& c) : io(i), cfg(c) {}

  http::Client* client_for(const RestOutputConfig& ro) {
    std::string key = !ro.verify ? "noverify" : ro.ca_file ? "ca:" + *ro.ca_file : "verify";
    auto& c = clients[key];
    if (!c) {
      http::ClientOptions o;
      o.verify = ro.verify;
      o.ca_file = ro.ca_file;
      o.max_idle_per_host = 256;
      c = std::make_unique<http::Client>(io.get_executor(), o);
    }
    return c.get();
  }
};

namespace {

Task<void> run_session(std::shared_ptr<SmtpService::Impl> self, Listener* l, tcp::socket sock) {
  const auto id = ++g_conn_id;
  log::Logger lg(fmt::format("cx{}", id));
  std::unique_ptr<smtp::ByteStream> stream =
      smtp::make_tcp_stream(std::move(sock), l->tls, /*server=*/true, l->svc->smtps);
  auto remote = stream->remote_endpoint();
  lg.info("connect from {}:{} on {}:{}", remote ? remote->host : "?", remote ? remote->port : 0,
          l->svc->host, l->svc->port);
  m_sessions.inc();
  m_open.inc();
  auto it = self->open.insert(self->open.end(), stream.get());
  InboundHandler handler(*l->svc, *l->ro, *l->client, l->secrets ? &*l->secrets : nullptr, lg);
  try {
    co_await smtp::run_server_session(*stream, handler, l->opts);
  } catch (const std::exception& e) {
    lg.error("session failed: {}", e.what());
  }
  stream->close();
  self->open.erase(it);
  m_open.dec();
  lg.info("disconnect");
}

Task<void> accept_loop(std::shared_ptr<SmtpService::Impl> self, Listener* l) {
  while (!self->stopping) {
    auto [ec, sock] = co_await l->acceptor->async_accept(asio::as_tuple(asio::use_awaitable));
    if (self->stopping) break;
    if (ec) {
      if (ec == asio::error::operation_aborted) break;
      log::warn("accept on {}:{}: {}", l->svc->host, l->svc->port, ec.message());
      continue;
    }
    spawn(self->io.get_executor(), run_session(self, l, std::move(sock)), "smtp session");
  }
}

}  // namespace

SmtpService::SmtpService(asio::io_context& io, const GatewayConfig& config)
    : impl_(std::make_shared<Impl>(io, config)) {}
SmtpService::~SmtpService() = default;

Result<void> SmtpService::listen(bool bind) {
  std::string errors;
  for (const auto& svc : impl_->cfg.services) {
    Listener l;
    l.svc = &svc;
    l.ro = impl_->cfg.find_rest_output(svc.endpoint);
    const std::string where = fmt::format("smtp listener {}:{}", svc.host, svc.port);
    if (!l.ro) {
      errors += where + ": no rest_output '" + svc.endpoint + "'\n";
      continue;
    }
    l.client = impl_->client_for(*l.ro);
    if (svc.cert && svc.key) {
      auto t = smtp::TlsContext::server(*svc.cert, *svc.key);
      if (!t.ok()) {
        errors += where + ": " + t.error().message + "\n";
        continue;
      }
      l.tls = *t;
    }
    if (svc.auth_secrets) {
      auto s = smtp::AuthSecrets::load(*svc.auth_secrets);
      if (!s.ok()) {
        errors += where + ": " + s.error().message + "\n";
        continue;
      }
      l.secrets = std::move(*s);
    }
    l.opts.hostname = svc.hostname;
    l.opts.max_message_size = static_cast<std::size_t>(svc.max_message_size);
    l.opts.max_recipients = static_cast<std::size_t>(svc.max_recipients);
    l.opts.idle_timeout = ms(svc.idle_timeout);
    l.opts.chunk_size = static_cast<std::size_t>(svc.chunk_size);
    l.opts.enable_bdat = svc.enable_bdat;
    l.opts.auth_enabled = l.secrets.has_value();
    l.opts.heartbeat_interval = ms(l.ro->refresh_interval);
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(svc.host == "localhost" ? "127.0.0.1" : svc.host, ec);
    if (ec) {
      errors += where + ": bad address '" + svc.host + "'\n";
      continue;
    }
    if (!bind) continue;
    tcp::endpoint ep(addr, svc.port);
    auto acc = std::make_unique<tcp::acceptor>(impl_->io);
    acc->open(ep.protocol(), ec);
    if (!ec) acc->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      errors += where + ": " + ec.message() + "\n";
      continue;
    }
    l.acceptor = std::move(acc);
    impl_->listeners.push_back(std::move(l));
  }
  if (!errors.empty()) {
    errors.pop_back();
    return Error(Errc::unavailable, errors);
  }
  return {};
}

std::vector<std::uint16_t> SmtpService::ports() const {
  std::vector<std::uint16_t> out;
  for (const auto& l : impl_->listeners) out.push_back(l.acceptor->local_endpoint().port());
  return out;
}

void SmtpService::start() {
  for (auto& l : impl_->listeners) {
    log::info("SMTP listener {}:{} -> {} (sender {} tag {}){}", l.svc->host,
              l.acceptor->local_endpoint().port(), l.ro->endpoint, l.svc->sender, l.svc->tag,
              l.svc->smtps ? " implicit TLS" : (l.tls ? " STARTTLS" : ""));
    spawn(impl_->io.get_executor(), accept_loop(impl_, &l), "smtp accept");
  }
}

void SmtpService::stop() {
  impl_->stopping = true;
  for (auto& l : impl_->listeners) {
    boost::system::error_code ec;
    l.acceptor->close(ec);
  }
  for (auto* s : impl_->open) s->close();
}

std::size_t SmtpService::sessions() const { return impl_->open.size(); }

}  // namespace koukan::gateway
