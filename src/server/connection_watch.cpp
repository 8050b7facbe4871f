#include "server/connection_watch.h"

#include <poll.h>

namespace dpserve {

bool ConnectionWatch::closed() const {
  if (fd_ < 0) return false;
  // POLLRDHUP: the peer shut down its side. Bytes of a pipelined next request (POLLIN) are not that.
  pollfd p{fd_, POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

}  // namespace dpserve
