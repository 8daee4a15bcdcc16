// Tries to produce to a shadow topic with kafkajs; succeeds only if the broker refuses
// with POLICY_VIOLATION, and prints the error.
//
// usage: node produce_refused.js BOOTSTRAP TOPIC
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, topic] = process.argv.slice(2)

async function main () {
  const kafka = new Kafka({ clientId: 'shadowlink-tests', brokers: [bootstrap], logLevel: logLevel.NOTHING, retry: { retries: 0 } })
  const producer = kafka.producer({ allowAutoTopicCreation: false, retry: { retries: 0 } })
  await producer.connect()
  try {
    await producer.send({ topic, messages: [{ value: 'must not be written', partition: 0 }] })
  } catch (e) {
    const text = `${e.type || ''} ${e.name} ${e.message}`
    console.log(text)
    await producer.disconnect()
    process.exit(text.includes('POLICY_VIOLATION') ? 0 : 1)
  }
  await producer.disconnect()
  console.error('the produce was not refused')
  process.exit(1)
}

main().catch((e) => { console.error(e); process.exit(1) })
