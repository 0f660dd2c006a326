// The per-transaction SMTP driver (spec/gateway.md §4.3 with the §10 fixes):
// one coroutine per outbound transaction consumes whatever is new in it, in
// order — MAIL (with connect), then each new recipient, then body pieces —
// and publishes every answer with a version bump. It is the only coroutine
// that touches the transaction's SMTP connection, so steps never overlap.
#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <exception>
#include <vector>

#include "gateway/outbound/outbound_tx.hpp"

namespace koukan::gateway::outbound {

namespace {

struct DriverState {
  bool mail_sent = false;   // MAIL handled (answered, whatever the answer)
  bool mail_ok = false;
  std::size_t rcpts_done = 0;
  bool any_rcpt_ok = false;
};

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

std::chrono::milliseconds to_ms(double s) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(seconds_to_duration(s));
}

// QUIT (errors ignored) and drop the connection.
Task<void> quit(std::shared_ptr<OutboundTx> t) {
  if (!t->client) co_return;
  t->step_running = true;
  co_await t->client->quit();
  t->client.reset();
  t->stream = nullptr;
  t->step_running = false;
  t->log.debug("smtp: quit");
}

// After the data response: park the session for the next transaction to
// the same destination (RSET answered 250), else QUIT.
Task<void> release(std::shared_ptr<OutboundTx> t) {
  if (t->client && t->sessions && !t->session_key.empty() && t->client->reusable()) {
    t->step_running = true;
    const bool ok = co_await t->client->reset();
    t->step_running = false;
    if (ok) {
      if (!t->sessions->full(t->session_key)) {
        SmtpSessionCache::Session s{std::move(t->client), t->stream, Clock::now()};
        t->stream = nullptr;
        t->sessions->put(t->session_key, std::move(s));
        t->log.debug("smtp: session kept for reuse");
        co_return;
      }
    }
  }
  co_await quit(t);
}

Task<void> do_mail(std::shared_ptr<OutboundTx> t, const Connector& connector, DriverState& st) {
  st.mail_sent = true;
  Response resp;
  std::vector<Response> pipelined;  // RCPT replies sent together with MAIL
  if (!t->tx.remote_host) {
    resp = Response(400, "SmtpEndpoint: bad request: no remote_host");
  } else if (!is_ip_literal(t->tx.remote_host->host)) {
    resp = Response(400, "SmtpEndpoint: bad request: remote_host.host is not a valid IP address");
  } else {
    t->step_running = true;
    const HostPort to = *t->tx.remote_host;
    if (t->sessions) {
      t->session_key = SmtpSessionCache::key(to, t->host);
      if (auto parked = t->sessions->take(t->session_key, Clock::now())) {
        t->client = std::move(parked->client);
        t->stream = parked->stream;
      }
    }
    // A parked session the server has dropped meanwhile shows up as a lost
    // connection on MAIL: then once more on a fresh connection.
    for (int round = 0; round < 2; ++round) {
      const bool reused = static_cast<bool>(t->client);
      if (!reused) {
        smtp::ConnectOptions co;
        co.timeout = to_ms(t->host.timeout);
        co.verify_tls = t->host.verify_tls;
        auto ex = co_await asio::this_coro::executor;
        auto connecting = connector(ex, to, co);
        auto conn = co_await std::move(connecting);
        if (!conn.ok()) {
          resp = Response(400, "connect error " + conn.error().message);
          break;
        }
        t->stream = conn.value().get();
        smtp::ClientOptions o;
        o.ehlo_host = t->host.ehlo_host;
        o.lmtp = t->host.lmtp;
        o.enable_bdat = t->host.enable_bdat;
        o.starttls = t->host.starttls;
        o.timeout = to_ms(t->host.timeout);
        t->client = std::make_unique<smtp::SmtpClient>(std::move(conn.value()), o);
      } else {
        t->log.debug("smtp: reusing a session");
      }
      const Mailbox from = *t->tx.mail_from;
      // The router normally creates with MAIL and the recipient together:
      // send them in one round trip when the server offers PIPELINING
      // (mail_rcpt falls back to one command at a time otherwise).
      std::vector<Mailbox> rcpts(t->tx.rcpt_to.begin(), t->tx.rcpt_to.end());
      if (t->host.lmtp && rcpts.size() > 1) rcpts.resize(1);
      pipelined.clear();
      if (rcpts.empty()) {
        resp = co_await t->client->mail(from);
      } else {
        smtp::MailRcptResult mr = co_await t->client->mail_rcpt(from, rcpts);
        resp = mr.mail;
        if (resp.ok() && mr.rcpt.size() == rcpts.size()) pipelined = std::move(mr.rcpt);
      }
      if (reused && t->client->connection_lost()) {
        t->log.debug("smtp: reused session lost ({}); connecting again", resp.message);
        t->client.reset();
        t->stream = nullptr;
        continue;
      }
      break;
    }
    t->step_running = false;
  }
  st.mail_ok = resp.ok();
  t->log.info("mail response {} {}", resp.code, resp.message);
  t->tx.mail_response = resp;
  for (std::size_t i = 0; i < pipelined.size(); ++i) {
    if (pipelined[i].ok()) st.any_rcpt_ok = true;
    t->log.info("rcpt[{}] response {} {}", i, pipelined[i].code, pipelined[i].message);
    if (t->tx.rcpt_response.size() <= i) t->tx.rcpt_response.resize(i + 1);
    t->tx.rcpt_response[i] = pipelined[i];
  }
  st.rcpts_done = pipelined.size();
  t->publish();
  if (!st.mail_ok) co_await quit(t);
}

Task<void> do_rcpt(std::shared_ptr<OutboundTx> t, DriverState& st) {
  const std::size_t i = st.rcpts_done++;
  const Mailbox to = t->tx.rcpt_to[i];  // a copy: PATCH may grow the list meanwhile
  Response resp;
  if (!st.mail_ok) {
    // In MAIL's class: after a temporary MAIL failure (e.g. the destination
    // is down) the recipient must stay temporary, so the router retries
    // (the original always answered 503 here).
    const bool temp = t->tx.mail_response && t->tx.mail_response->temp();
    resp = temp ? Response(451, "4.5.1 failed precondition: MAIL")
                : Response(503, "5.5.1 failed precondition: MAIL");
  } else if (t->host.lmtp && i > 0) {
    resp = Response(450, "lmtp multi-rcpt unimplemented");
  } else if (!t->client) {
    resp = Response(450, "internal error: no SMTP connection");
  } else {
    t->step_running = true;
    resp = co_await t->client->rcpt(to);
    t->step_running = false;
  }
  if (resp.ok()) st.any_rcpt_ok = true;
  t->log.info("rcpt[{}] response {} {}", i, resp.code, resp.message);
  if (t->tx.rcpt_response.size() <= i) t->tx.rcpt_response.resize(i + 1);
  t->tx.rcpt_response[i] = resp;
  t->publish();
}

Task<void> do_body(std::shared_ptr<OutboundTx> t, DriverState& st) {
  StagedPiece piece = std::move(*t->staged);
  t->staged.reset();
  t->taken.notify_all();  // the PUT may read its next piece now
  if (!st.any_rcpt_ok || !t->client) {
    // Bytes are accepted and dropped; the answer comes with the last one.
    if (piece.last) {
      t->tx.data_response = Response(554, "5.5.1 no valid recipients (SmtpEndpoint)");
      t->log.info("data response 554: no valid recipients");
      t->publish();
    }
    co_return;
  }
  t->step_running = true;
  const std::size_t chunk = std::max<std::uint64_t>(1, t->host.chunk_size);
  std::string_view rest = piece.data;
  std::optional<std::vector<Response>> result;
  for (;;) {
    const std::size_t n = std::min(chunk, rest.size());
    const std::string_view sub = rest.substr(0, n);
    rest.remove_prefix(n);
    const bool last = piece.last && rest.empty();
    if (sub.empty() && !last) break;
    result = co_await t->client->data(sub, last);
    if (result || rest.empty()) break;
  }
  t->step_running = false;
  if (result) {
    Response resp = result->empty() ? Response(450, "internal error: no data response from the SMTP client")
                                    : result->front();
    t->log.info("data response {} {}", resp.code, resp.message);
    t->tx.data_response = std::move(resp);
    t->publish();
  }
}

Task<void> drive(std::shared_ptr<OutboundTx> t, const Connector& connector, DriverState& st) {
  for (;;) {
    if (t->tx.cancelled) {
      t->log.info("cancelled");
      co_await quit(t);
      co_return;
    }
    if (t->tx.data_response) {
      co_await release(t);
      co_return;
    }
    if (!st.mail_sent && t->tx.mail_from) {
      co_await do_mail(t, connector, st);
      continue;
    }
    if (st.mail_sent && st.rcpts_done < t->tx.rcpt_to.size()) {
      co_await do_rcpt(t, st);
      continue;
    }
    // The body goes after the envelope known so far (no MAIL at all: there
    // is nobody to send it to; do_body drops it).
    const bool envelope_done = !t->tx.mail_from || (st.mail_sent && st.rcpts_done == t->tx.rcpt_to.size());
    if (t->staged && envelope_done) {
      co_await do_body(t, st);
      continue;
    }
    co_await t->input.wait();
  }
}

// After an unexpected failure: every missing answer becomes a temporary
// error, published (the original left them unpublished, gateway.md §4.3).
void fill_missing(OutboundTx& t, const Response& r) {
  if (t.tx.mail_from && !t.tx.mail_response) t.tx.mail_response = r;
  if (t.tx.rcpt_response.size() < t.tx.rcpt_to.size()) t.tx.rcpt_response.resize(t.tx.rcpt_to.size());
  for (auto& rr : t.tx.rcpt_response)
    if (!rr) rr = r;
  if (!t.tx.data_response) t.tx.data_response = r;
}

}  // namespace

Task<void> run_smtp_driver(std::shared_ptr<OutboundTx> t, Connector connector) {
  DriverState st;
  std::string failure;
  try {
    co_await drive(t, connector, st);
  } catch (const std::exception& e) {
    failure = e.what();
    if (failure.empty()) failure = "exception";
  } catch (...) {
    failure = "unknown exception";
  }
  if (!failure.empty()) {
    t->log.error("smtp driver failed: {}", failure);
    t->step_running = false;
    t->stream = nullptr;
    t->client.reset();
    const Response r(450, "internal error: " + failure);
    fill_missing(*t, r);
    t->publish();
  }
  t->driver_running = false;
  // Nobody will take a staged piece any more: release a waiting PUT.
  t->staged.reset();
  t->taken.notify_all();
}

}  // namespace koukan::gateway::outbound
