// autocannon's setupClient (loaded by path in its worker): every connection starts at its own
// random place in the request list, so the connections poll different users, not the same
// ones in step.
module.exports = (client) => {
  const requests = client.requestIterator
  const start = Math.floor(Math.random() * requests.requests.length)
  requests.currentRequestIndex = start
  requests.currentRequest = requests.requests[start]
}
