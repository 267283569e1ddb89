# The seed's "Manual Testing: Test Caching", as written; only the import line and the
# endpoint differ (the seed's placeholder "your-elasticache-endpoint" is read from
# ELASTICACHE_ENDPOINT).
import asyncio
import os
from llm_failover import AWSLLMAdapter

async def test_caching():
    adapter = AWSLLMAdapter(
        region_name="us-east-1",
        elasticache_endpoint=os.environ["ELASTICACHE_ENDPOINT"]
    )
    
    prompt = "What is the capital of France?"
    
    # First call - not cached
    result1 = await adapter.generate_completion(
        prompt=prompt,
        agent_id="test_agent",
        tenant_id="test_tenant",
        model="gpt-4",
        temperature=0.3,
        max_tokens=20,
        response_format="text"
    )
    print(f"First call - Cached: {result1['cached']}")
    
    # Second call - should be cached
    result2 = await adapter.generate_completion(
        prompt=prompt,
        agent_id="test_agent",
        tenant_id="test_tenant",
        model="gpt-4",
        temperature=0.3,
        max_tokens=20,
        response_format="text"
    )
    print(f"Second call - Cached: {result2['cached']}")
    print(f"Same content: {result1['content'] == result2['content']}")

asyncio.run(test_caching())
