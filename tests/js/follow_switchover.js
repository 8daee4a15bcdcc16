// An application that knows one bootstrap address: an idempotent kafkajs producer
// (acks=all) writing at a steady rate and a consumer-group member reading the same topic,
// for watching what it sees while the topic moves to another node.
//
// usage: node follow_switchover.js BOOTSTRAP TOPIC GROUP RATE SECONDS PARTITIONS [KEY_PREFIX]
// Record i goes to partition i % PARTITIONS with key "{KEY_PREFIX}key-i". After SECONDS the
// producer stops; the consumer reads on until it has every acknowledged key (or 60 s
// more), then leaves. Prints one JSON object:
// {"acked": [[partition, offset, key], ...], "consumed": [[partition, offset, key], ...],
//  "delivery_errors": [...], "consume_errors": [...], "client_errors": [...]}
// delivery_errors are sends that failed to the application, consume_errors consumer
// crashes; client_errors are what kafkajs logs at error level (retries among them).
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, topic, group, rate, seconds, partitions, keyPrefix = ''] = process.argv.slice(2)
const DRAIN_MS = 60000
const TICK_MS = 50

const out = { acked: [], consumed: [], delivery_errors: [], consume_errors: [], client_errors: [] }

const logCreator = () => ({ namespace, log }) => {
  out.client_errors.push(`${namespace}: ${log.message}`)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function produce (kafka) {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false })
  await producer.connect()
  const start = Date.now()
  let sent = 0
  while (Date.now() - start < Number(seconds) * 1000) {
    const due = Math.floor(((Date.now() - start) / 1000) * Number(rate))
    const messages = []
    for (; sent < due; sent++) {
      messages.push({ key: `${keyPrefix}key-${sent}`, value: `value-${sent}`, partition: sent % Number(partitions) })
    }
    if (messages.length > 0) {
      try {
        const results = await producer.send({ topic, acks: -1, messages })
        const base = new Map(results.map((r) => [r.partition, Number(r.baseOffset)]))
        for (const m of messages) {
          const offset = base.get(m.partition)
          base.set(m.partition, offset + 1)
          out.acked.push([m.partition, offset, m.key])
        }
      } catch (e) {
        out.delivery_errors.push(String(e))
      }
    }
    await sleep(TICK_MS)
  }
  await producer.disconnect()
}

async function main () {
  // An application that hangs fails the run with what it saw rather than stalling it.
  setTimeout(() => {
    out.consume_errors.push('the application did not finish in time')
    console.log(JSON.stringify(out))
    process.exit(1)
  }, Number(seconds) * 1000 + DRAIN_MS + 30000).unref()
  const kafka = new Kafka({ clientId: 'shadowlink-tests', brokers: [bootstrap], logLevel: logLevel.ERROR, logCreator })
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 })
  consumer.on(consumer.events.CRASH, (e) => out.consume_errors.push(String(e.payload.error)))
  const seen = new Set()
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({
    autoCommitInterval: 200,
    eachMessage: async ({ partition, message }) => {
      const key = message.key.toString()
      seen.add(key)
      out.consumed.push([partition, Number(message.offset), key])
    }
  })
  await produce(kafka)
  const deadline = Date.now() + DRAIN_MS
  while (Date.now() < deadline && !out.acked.every(([, , key]) => seen.has(key))) {
    await sleep(200)
  }
  await consumer.disconnect()
  console.log(JSON.stringify(out))
}

main().catch((e) => { console.error(e); process.exit(1) })
