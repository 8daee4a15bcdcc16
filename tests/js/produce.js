// Produces COUNT records to a topic a shadowlink node owns with an idempotent kafkajs
// producer (acks=all), record i to partition i % PARTITIONS, and prints the number
// acknowledged.
//
// usage: node produce.js BOOTSTRAP TOPIC COUNT PARTITIONS
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, topic, count, partitions] = process.argv.slice(2)

async function main () {
  const kafka = new Kafka({ clientId: 'shadowlink-tests', brokers: [bootstrap], logLevel: logLevel.ERROR })
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false })
  await producer.connect()
  let acked = 0
  for (let start = 0; start < Number(count); start += 50) {
    const messages = []
    for (let i = start; i < Math.min(start + 50, Number(count)); i++) {
      messages.push({ key: `key-${i}`, value: `value-${i}`, partition: i % Number(partitions) })
    }
    const results = await producer.send({ topic, acks: -1, messages })
    acked += messages.length
    if (results.some((r) => r.errorCode !== 0)) throw new Error(JSON.stringify(results))
  }
  await producer.disconnect()
  console.log(acked)
}

main().catch((e) => { console.error(e); process.exit(1) })
