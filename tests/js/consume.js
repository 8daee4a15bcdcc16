// Reads a topic from the beginning with kafkajs in a consumer group and prints one JSON
// line per record (partition, offset, key, value, headers, timestamp), sorted.
//
// usage: node consume.js BOOTSTRAP TOPIC EXPECTED GROUP
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, topic, expected, group] = process.argv.slice(2)
const hex = (b) => (b === null || b === undefined ? null : Buffer.from(b).toString('hex'))

async function main () {
  const kafka = new Kafka({ clientId: 'shadowlink-tests', brokers: [bootstrap], logLevel: logLevel.ERROR })
  const consumer = kafka.consumer({ groupId: group, readUncommitted: false })
  const seen = []
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const done = new Promise((resolve) => {
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        seen.push({
          partition,
          offset: Number(message.offset),
          key: hex(message.key),
          value: hex(message.value),
          headers: Object.entries(message.headers || {}).map(([k, v]) => [k, hex(v)]),
          timestamp: Number(message.timestamp)
        })
        if (seen.length >= Number(expected)) resolve()
      }
    })
  })
  // unref: a pending timer must not keep the process alive once the records are in.
  const timeout = new Promise((resolve) => setTimeout(resolve, 60000).unref())
  await Promise.race([done, timeout])
  await consumer.disconnect()
  seen.sort((a, b) => a.partition - b.partition || a.offset - b.offset)
  for (const r of seen) console.log(JSON.stringify(r))
}

main().catch((e) => { console.error(e); process.exit(1) })
